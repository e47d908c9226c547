--[[
  ack: after the batch's COMMIT, drop its ids from the in-flight set and start
  the cache TTL of the values that are now durable. A record re-dirtied while
  its batch was in flight keeps no TTL (its newer value is still to be drained).
  Tombstones are deleted rather than expired. Records the version guard skipped
  (PostgreSQL holds a newer version) are acked but keep no TTL: their value was
  not written, so it must not expire as if it were durable. Ids that had been
  dead-lettered earlier and now landed leave the dead hash. A new row after a
  delete loses its recreated mark once merged, unless a later delete started
  another generation. When the run set and the in-flight set are both empty the
  run is over and is cleared from meta.

  Input:
    KEYS[1] in-flight set       P:{T:n}:run:<run>:inflight
    KEYS[2] run set             P:{T:n}:run:<run>
    KEYS[3] dirty set           P:{T:n}:dirty
    KEYS[4] meta hash           P:{T:n}:meta
    KEYS[5] lease key           P:{T:n}:lease
    KEYS[6] dead-letter hash    P:{T:n}:dead
    KEYS[7] tombstone set       P:{T:n}:tombs
    KEYS[8] recreated hash      P:{T:n}:recreated
    ARGV[1] owner token         must hold the lease
    ARGV[2] value key prefix    P:{T:n}:v:
    ARGV[3] ttl in seconds      0 keeps values without expiry
    ARGV[4] u                   how many upserted ids follow (their values get the TTL)
    ARGV[5] k                   how many kept ids follow them (acked, no TTL)
    ARGV[6] d                   how many deleted ids follow those (tombstones removed)
    ARGV[7..6+u+k+d]            the upserted, kept and deleted ids
    ARGV[7+u+k+d..]             id, generation pairs of merged new rows after a delete
                                (a generation's "@xid" suffix is ignored)

  Output:
    {run set size, in-flight set size}.
    -1 when the caller does not hold the lease (nothing is changed: the new
    holder has adopted the ids and will merge them again, idempotently).
]]
local rcall = redis.call
local inflight, run, dirty, meta, lease, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local tombs, recreated = KEYS[7], KEYS[8]
local token, prefix, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local n_upserted, n_kept, n_deleted = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local CHUNK = 5000 -- under Lua's unpack limit (~8000)

if rcall("GET", lease) ~= token then
  return -1
end

local has_dead = rcall("HLEN", dead) > 0
local has_dirty = rcall("SCARD", dirty) > 0 -- nothing can be re-dirtied otherwise
local has_tombs = rcall("EXISTS", tombs) == 1
local first = 7
local last = first + n_upserted + n_kept + n_deleted - 1
local kept_from, deleted_from = first + n_upserted, first + n_upserted + n_kept
for i = first, last, CHUNK do
  local j = math.min(i + CHUNK - 1, last)
  rcall("SREM", inflight, unpack(ARGV, i, j))
  if has_dead then
    rcall("HDEL", dead, unpack(ARGV, i, j))
  end
  local redirtied = has_dirty and rcall("SMISMEMBER", dirty, unpack(ARGV, i, j)) or {}
  for k = i, j do
    if redirtied[k - i + 1] ~= 1 then
      if k < kept_from then
        if ttl > 0 then
          rcall("EXPIRE", prefix .. ARGV[k], ttl)
        end
      elseif k >= deleted_from then
        rcall("DEL", prefix .. ARGV[k])
        if has_tombs then
          rcall("SREM", tombs, ARGV[k])
        end
      end
    end
  end
end

-- A mark may carry "@xid" (landing.lua): compare generations only.
local function generation(mark)
  return (string.gsub(mark, "@.*$", ""))
end
for i = last + 1, #ARGV, 2 do
  local current = rcall("HGET", recreated, ARGV[i])
  if current and generation(current) == generation(ARGV[i + 1]) then
    rcall("HDEL", recreated, ARGV[i])
  end
end

local run_left = rcall("SCARD", run)
local inflight_left = rcall("SCARD", inflight)
if run_left == 0 and inflight_left == 0 then
  rcall("HDEL", meta, "run")
end
return {run_left, inflight_left}
