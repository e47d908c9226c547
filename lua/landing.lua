--[[
  landing: before COMMIT, note on each new row after a delete which
  PostgreSQL transaction is replacing the old row: "generation@xid". A
  drainer that adopts the record after a crash between that COMMIT and the
  ack asks PostgreSQL whether the transaction committed; if it did, the old
  row is already gone and the record is merged as a plain update, so a
  partial write made since is not taken for a whole new row.

  Input:
    KEYS[1] recreated hash      P:{T:n}:recreated  id -> generation[@xid]
    KEYS[2] lease key           P:{T:n}:lease
    ARGV[1] owner token         must hold the lease
    ARGV[2] xid                 the merging transaction: PostgreSQL's txid_current(),
                                or another sink's token for it (no "@")
    ARGV[3], ARGV[4], ...       id1, generation1, ... (pairs; a generation
                                may carry an older "@xid", which is ignored)

  Output:
    the number of marks noted (a mark whose generation changed meanwhile, a
    newer delete, is left alone).
    -1 when the caller does not hold the lease.
]]
local rcall = redis.call
local recreated, lease = KEYS[1], KEYS[2]
local token, xid = ARGV[1], ARGV[2]

local function generation(mark)
  return (string.gsub(mark, "@.*$", ""))
end

if rcall("GET", lease) ~= token then
  return -1
end

local n = 0
for i = 3, #ARGV, 2 do
  local current = rcall("HGET", recreated, ARGV[i])
  local gen = generation(ARGV[i + 1])
  if current and generation(current) == gen then
    rcall("HSET", recreated, ARGV[i], gen .. "@" .. xid)
    n = n + 1
  end
end
return n
