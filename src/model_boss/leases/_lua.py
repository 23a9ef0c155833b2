"""Lua scripts of the Redis store, one per atomic operation.

All keys of one pool share the hash tag ``{pool}`` so a pool lives in one cluster slot:

    KEYS[1] {prefix}pool:{<pool>}     HASH capacity, foreign, used, token, seq,
                                           run_id, safe_after (see _EPOCH)
    KEYS[2] {prefix}leases:{<pool>}   HASH lease id -> lease JSON
    KEYS[3] {prefix}expiry:{<pool>}   ZSET lease id -> expires_at (seconds, Redis TIME)
    KEYS[4] {prefix}waiters:{<pool>}  HASH waiter id -> waiter JSON

Time always comes from Redis ``TIME`` inside the script, never from a client clock.
Numbers go back to Python as strings (Lua numbers would be truncated to integers).
Fencing tokens are strings in the lease JSON too: cjson writes numbers with 14 digits.
"""

from __future__ import annotations

from model_boss.leases._recovery import RECOVERY_S, TOKEN_EPOCH, TOKEN_SHIFT

__all__ = [
    "DRAIN",
    "FOREIGN",
    "GRANT",
    "PREEMPT",
    "REGISTER",
    "RELEASE",
    "RENEW",
    "STATUS",
    "WITHDRAW",
]

# Shared prologue: `now`, and purge of expired leases (keeping `used` in step).
_PROLOGUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function purge()
  local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
  local freed = 0
  for _, id in ipairs(expired) do
    local raw = redis.call('HGET', KEYS[2], id)
    if raw then
      freed = freed + cjson.decode(raw).mb
      redis.call('HDEL', KEYS[2], id)
    end
    redis.call('ZREM', KEYS[3], id)
  end
  if freed > 0 then redis.call('HINCRBY', KEYS[1], 'used', -freed) end
end
"""

# Store epochs (see _recovery.py and DESIGN.md): the first script this server process runs
# on a pool stamps it with the server's run_id. A pool stamped by another process (a restart
# that kept the data, a failover to a replica) or created on a server younger than the
# recovery window (a restart that lost the data, or a brand-new server) grants nothing
# until every lease someone may still believe held has had its chance to renew and fail;
# its token counter jumps to the floor of that moment, above every token issued before.
# epoch(created) -> the store time before which the pool grants nothing (0: none)
_EPOCH = f"""
local function epoch(created)
  local info = redis.call('INFO', 'server')
  local run_id = string.match(info, 'run_id:(%w+)')
  local p = redis.call('HMGET', KEYS[1], 'run_id', 'safe_after', 'token')
  if p[1] == run_id then return tonumber(p[2] or '0') end
  local safe = now + {RECOVERY_S!r}
  if created then
    local uptime = tonumber(string.match(info, 'uptime_in_seconds:(%d+)'))
    safe = now - uptime - 1 + {RECOVERY_S!r}
  end
  local floor = math.max(0, math.floor(math.max(safe, now)) - {TOKEN_EPOCH}) * {2**TOKEN_SHIFT}
  if floor > tonumber(p[3] or '0') then
    redis.call('HSET', KEYS[1], 'token', string.format('%.0f', floor))
  end
  if safe <= now then safe = 0 end
  redis.call('HSET', KEYS[1], 'run_id', run_id, 'safe_after', tostring(safe))
  return safe
end
"""

# GRANT
# KEYS: pool, leases, expiry, waiters
# ARGV[1] lease JSON without token/granted_at/expires_at   ARGV[2] mb   ARGV[3] priority
# ARGV[4] ttl_s   ARGV[5] lease/waiter id   ARGV[6] wait (0|1)   ARGV[7] waiter_ttl_s
# ARGV[8] aging_s_per_level (see _ledger.queue_key)
# -> {'nopool'} | {'granted', lease JSON, free, ahead} | {'denied', '', free, ahead}
#    | {'recovering', seconds left, '0', '0'}
GRANT = (
    _PROLOGUE
    + _EPOCH
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'nopool'} end
local safe = epoch(false)
if now < safe then return {'recovering', tostring(safe - now), '0', '0'} end
purge()
local mb = tonumber(ARGV[2])
local prio = tonumber(ARGV[3])
local id = ARGV[5]
local aging = tonumber(ARGV[8])
local mine = redis.call('HGET', KEYS[4], id)
local myseq = math.huge
local since = now
if mine then
  local m = cjson.decode(mine)
  myseq = m.seq
  if m.since and m.since > 0 then since = m.since end
end
local mykey = since + (prio - 1) * aging
local ahead = 0
local all = redis.call('HGETALL', KEYS[4])
for i = 1, #all, 2 do
  local w = cjson.decode(all[i + 1])
  if w.expires_at <= now then
    redis.call('HDEL', KEYS[4], all[i])
  elseif all[i] ~= id then
    local wsince = now
    if w.since and w.since > 0 then wsince = w.since end
    local wkey = wsince + (w.priority - 1) * aging
    if wkey < mykey or (wkey == mykey and w.seq < myseq) then
      ahead = ahead + w.mb
    end
  end
end
local cap = tonumber(redis.call('HGET', KEYS[1], 'capacity'))
local foreign = tonumber(redis.call('HGET', KEYS[1], 'foreign') or '0')
local used = tonumber(redis.call('HGET', KEYS[1], 'used') or '0')
local free = cap - used - foreign
if mb + ahead <= free then
  local lease = cjson.decode(ARGV[1])
  lease.token = string.format('%.0f', redis.call('HINCRBY', KEYS[1], 'token', 1))
  lease.granted_at = now
  lease.expires_at = now + tonumber(ARGV[4])
  lease.preempt = false
  lease.preempt_reason = ''
  lease.preempt_priority = 0
  local raw = cjson.encode(lease)
  redis.call('HSET', KEYS[2], id, raw)
  redis.call('ZADD', KEYS[3], lease.expires_at, id)
  redis.call('HINCRBY', KEYS[1], 'used', mb)
  if mine then redis.call('HDEL', KEYS[4], id) end
  return {'granted', raw, tostring(free), tostring(ahead)}
end
if ARGV[6] == '1' then
  local w
  if mine then
    w = cjson.decode(mine)
  else
    w = {id = id, pool = cjson.decode(ARGV[1]).pool, mb = mb, priority = prio,
         seq = redis.call('HINCRBY', KEYS[1], 'seq', 1), holder = cjson.decode(ARGV[1]).holder,
         since = now}
  end
  w.expires_at = now + tonumber(ARGV[7])
  redis.call('HSET', KEYS[4], id, cjson.encode(w))
end
return {'denied', '', tostring(free), tostring(ahead)}
"""
)

# RENEW
# KEYS: pool, leases, expiry   ARGV[1] lease id   ARGV[2] ttl_s
# -> {'lost'} | {'ok', expires_at, preempt (0|1), preempt_reason, preempt_priority}
RENEW = (
    _PROLOGUE
    + """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return {'lost'} end
local lease = cjson.decode(raw)
if lease.expires_at <= now then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('HINCRBY', KEYS[1], 'used', -lease.mb)
  return {'lost'}
end
lease.expires_at = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(lease))
redis.call('ZADD', KEYS[3], lease.expires_at, ARGV[1])
local pre = '0'
if lease.preempt then pre = '1' end
return {'ok', tostring(lease.expires_at), pre, lease.preempt_reason or '',
        tostring(lease.preempt_priority or 0)}
"""
)

# RELEASE
# KEYS: pool, leases, expiry   ARGV[1] lease id   -> 1 released | 0 already gone
RELEASE = """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'used', -cjson.decode(raw).mb)
return 1
"""

# WITHDRAW
# KEYS: waiters   ARGV[1] waiter id   -> 1 | 0
WITHDRAW = """
return redis.call('HDEL', KEYS[1], ARGV[1])
"""

# PREEMPT: mark less urgent leases until need_mb is covered (leases already marked at least
# this urgently count; see _ledger.preemption_victims).
# KEYS: pool, leases, expiry   ARGV[1] need_mb   ARGV[2] priority   ARGV[3] reason
# -> list of lease ids newly asked
PREEMPT = (
    _PROLOGUE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'nopool'} end
purge()
local need = tonumber(ARGV[1])
local prio = tonumber(ARGV[2])
if need <= 0 then return {} end
local asked = 0
local candidates = {}
local vals = redis.call('HVALS', KEYS[2])
for _, raw in ipairs(vals) do
  local lease = cjson.decode(raw)
  if lease.priority > prio then
    if lease.preempt and (lease.preempt_priority or 0) <= prio then
      asked = asked + lease.mb
    else
      table.insert(candidates, lease)
    end
  end
end
table.sort(candidates, function(a, b)
  if a.priority ~= b.priority then return a.priority > b.priority end
  if a.mb ~= b.mb then return a.mb > b.mb end
  return a.granted_at < b.granted_at
end)
local out = {}
for _, lease in ipairs(candidates) do
  if asked >= need then break end
  lease.preempt = true
  lease.preempt_reason = ARGV[3]
  lease.preempt_priority = prio
  redis.call('HSET', KEYS[2], lease.id, cjson.encode(lease))
  asked = asked + lease.mb
  table.insert(out, lease.id)
end
return out
"""
)

# DRAIN: ask every live lease of the pool to release.
# KEYS: pool, leases, expiry   ARGV[1] reason   -> number asked
DRAIN = (
    _PROLOGUE
    + """
purge()
local n = 0
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local lease = cjson.decode(all[i + 1])
  lease.preempt = true
  lease.preempt_reason = ARGV[1]
  lease.preempt_priority = 0
  redis.call('HSET', KEYS[2], all[i], cjson.encode(lease))
  n = n + 1
end
return n
"""
)

# STATUS: purge, then the pool as it is now.
# KEYS: pool, leases, expiry, waiters
# -> {'nopool'} | {capacity, used, foreign, leases JSON array, waiters JSON array}
STATUS = (
    _PROLOGUE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'nopool'} end
purge()
local waiters = {}
local all = redis.call('HGETALL', KEYS[4])
for i = 1, #all, 2 do
  local w = cjson.decode(all[i + 1])
  if w.expires_at <= now then redis.call('HDEL', KEYS[4], all[i])
  else table.insert(waiters, all[i + 1]) end
end
local p = redis.call('HMGET', KEYS[1], 'capacity', 'used', 'foreign')
return {p[1], p[2] or '0', p[3] or '0',
        '[' .. table.concat(redis.call('HVALS', KEYS[2]), ',') .. ']',
        '[' .. table.concat(waiters, ',') .. ']'}
"""
)

# REGISTER: create the pool, or set its capacity; stamp its epoch (see _EPOCH).
# KEYS: pool, pools set   ARGV[1] capacity_mb   ARGV[2] pool name   -> 1
REGISTER = (
    _PROLOGUE
    + _EPOCH
    + """
local created = redis.call('EXISTS', KEYS[1]) == 0
redis.call('HSET', KEYS[1], 'capacity', ARGV[1])
for _, field in ipairs({'used', 'foreign', 'token', 'seq'}) do
  redis.call('HSETNX', KEYS[1], field, 0)
end
redis.call('SADD', KEYS[2], ARGV[2])
epoch(created)
return 1
"""
)

# FOREIGN: memory used outside the ledger.
# KEYS: pool   ARGV[1] foreign_mb   -> 1 | 0 (no such pool)
FOREIGN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'foreign', ARGV[1])
return 1
"""
