--[[
  remove: delete the bookkeeping keys of one partition of a table being
  removed (`syncwd-fast tables remove`), under the remover's lease so that no
  drain works on the partition meanwhile. Without "force" nothing is deleted
  while a record waits (dirty, in a run, in flight or dead-lettered): a writer
  that wrote since the caller looked is never overruled. Values and old run
  keys are the caller's (bounded SCAN steps, forget.lua); the lease is
  released by the caller last.

  Input:
    KEYS[1] lease               P:{T:n}:lease
    KEYS[2] meta hash           P:{T:n}:meta
    KEYS[3] dirty set           P:{T:n}:dirty
    KEYS[4] dead hash           P:{T:n}:dead
    KEYS[5] tombstone set       P:{T:n}:tombs
    KEYS[6] recreated hash      P:{T:n}:recreated
    ARGV[1] owner token         the remover's lease token
    ARGV[2] mode                "force": delete whatever waits; else ""
    ARGV[3] run key prefix      P:{T:n}:run:  (the active run's set, in-flight
                                hash and redo list are deleted with it)

  Output:
    {-1} the caller does not hold the lease: nothing changed;
    {0, dirty, run, dead} refused (no "force" and something waits): nothing changed;
    {1, dirty, run, dead, keys deleted} removed. dirty and dead: the sizes of
    those keys, run: the active run ("" for none), as they were deleted.
]]
local rcall = redis.call
local lease, meta, dirty, dead, tombs, recreated = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local token, mode, run_prefix = ARGV[1], ARGV[2], ARGV[3]

if rcall("GET", lease) ~= token then
  return {-1}
end
local ndirty = rcall("SCARD", dirty)
local ndead = rcall("HLEN", dead)
local run = rcall("HGET", meta, "run") or ""
if mode ~= "force" and (ndirty > 0 or ndead > 0 or run ~= "") then
  return {0, ndirty, run, ndead}
end
local doomed = {dirty, dead, tombs, recreated, meta}
if run ~= "" then
  local base = run_prefix .. run
  doomed[#doomed + 1] = base
  doomed[#doomed + 1] = base .. ":inflight"
  doomed[#doomed + 1] = base .. ":redo"
end
-- UNLINK: a large set or hash is freed off the main thread.
local deleted = rcall("UNLINK", unpack(doomed))
return {1, ndirty, run, ndead, deleted}
