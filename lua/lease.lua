--[[
  lease: the per-partition drainer lease, a fencing token with an expiry.
  A live drainer renews it (a heartbeat while it works); one that died or
  stalled stops renewing, so a successor sees it expire and takes over.

  Input:
    KEYS[1] lease key           P:{T:n}:lease
    KEYS[2] meta hash           P:{T:n}:meta (optional) records who holds the
                                lease in fields "holder" and "holder_id"
                                (acquire, takeover) and clears them (release)
    ARGV[1] operation           "acquire" | "takeover" | "renew" | "release"
    ARGV[2] owner token         random, one per drainer and partition
    ARGV[3] lease time in ms    (acquire, takeover, renew)
    ARGV[4] holder              (acquire, takeover; optional) "host pid N since T", for
                                status and messages
    ARGV[5] holder id           (acquire, takeover; optional) JSON (holder.py), kept in
                                meta field "holder_id": whether that holder died
    ARGV[6] dead token          (takeover) the token of a holder the caller found
                                dead: the lease is taken only if it still holds it

  Output:
    1 when the caller holds the lease after the call (acquire, takeover, renew)
    or has just released it (release); 0 when another owner holds it or it
    expired (takeover: when it no longer holds the dead token).
]]
local rcall = redis.call
local key, meta, op, token = KEYS[1], KEYS[2], ARGV[1], ARGV[2]

-- The new holder's names in meta; an id left by an earlier holder goes.
local function note_holder()
  if meta and ARGV[4] then
    rcall("HSET", meta, "holder", ARGV[4])
    if ARGV[5] then
      rcall("HSET", meta, "holder_id", ARGV[5])
    else
      rcall("HDEL", meta, "holder_id")
    end
  end
end

local holder = rcall("GET", key)
if op == "acquire" then
  if holder == token then
    rcall("PEXPIRE", key, ARGV[3])
    return 1
  end
  if rcall("SET", key, token, "NX", "PX", ARGV[3]) then
    note_holder()
    return 1
  end
  return 0
elseif op == "takeover" then
  -- Compare and set: a holder found dead that still holds the lease. Had it
  -- renewed or released it, or another drainer taken it, the token differs.
  if holder and holder == ARGV[6] then
    rcall("SET", key, token, "PX", ARGV[3])
    note_holder()
    return 1
  end
  return 0
elseif op == "renew" then
  if holder == token then
    rcall("PEXPIRE", key, ARGV[3])
    return 1
  end
  return 0
elseif op == "release" then
  if holder == token then
    rcall("DEL", key)
    if meta then
      rcall("HDEL", meta, "holder", "holder_id")
    end
    return 1
  end
  return 0
end
return redis.error_reply("lease: unknown operation " .. tostring(op))
