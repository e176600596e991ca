package redisstore

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// The scripts below are the only writers of a source's keys. Each one
// declares every key it touches in KEYS, and all KEYS of one call share one
// hash slot: the source's ({source}) or, for the ready index, the sink's.
// The one exception is startPolls on a single server, where one call takes
// the ticks of many sources; in a Cluster it takes one tick per call.
//
// Delivery records are parsed in Lua (parse/build) as well as in Go
// (decodeRecord); the two must agree with the layout in doc.go.

// luaPrelude holds the helpers every source-slot script shares.
const luaPrelude = `
if redis.replicate_commands then redis.replicate_commands() end

-- parse splits a delivery record into its fields (see doc.go), or only
-- into the first upto of them (an ack needs neither the creation time nor
-- the payload, the largest field). It reads each length digit by digit:
-- string.find, string.sub and tonumber per field made three interned
-- strings of each, a third of a settle's cost.
local function parse(r, upto)
  local f, k, pos, n = {}, 0, 3, #r
  local byte, sub = string.byte, string.sub
  upto = upto or n
  while pos <= n and k < upto do
    local len, b = 0, byte(r, pos)
    while b ~= 58 do -- ':'
      len = len * 10 + b - 48
      pos = pos + 1
      b = byte(r, pos)
    end
    k = k + 1
    f[k] = sub(r, pos + 1, pos + len)
    pos = pos + len + 1
  end
  return f
end

-- build joins fields into a record (parse's inverse) in one table.concat.
local function build(f)
  local parts, k = {'1|'}, 1
  for i = 1, #f do
    parts[k + 1], parts[k + 2], parts[k + 3] = #f[i], ':', f[i]
    k = k + 3
  end
  return table.concat(parts)
end

-- member is the due/dead ZSET member of a record: 20-digit seq, then the id.
local function member(seq, id)
  return string.rep('0', 20 - #seq) .. seq .. id
end

-- bump gives the (source, sink) pair a new index version: Redis time in
-- microseconds, and always above the last one. It is stored only while the
-- source's head exists, so probing a vanished source creates nothing.
local function bump(head, sink)
  local t = redis.call('TIME')
  local v = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local old = tonumber(redis.call('HGET', head, 'v:' .. sink) or '0')
  if v <= old then v = old + 1 end
  local s = string.format('%.0f', v)
  if redis.call('EXISTS', head) == 1 then redis.call('HSET', head, 'v:' .. sink, s) end
  return s
end

-- earliest is the lowest score in a due ZSET, '' when it is empty.
local function earliest(due)
  local m = redis.call('ZRANGE', due, 0, 0, 'WITHSCORES')
  if #m == 0 then return '' end
  return m[2]
end

-- fprefix starts the FIFO members of one item key: its length, ':' and the
-- key, so that no key's prefix starts another key's members.
local function fprefix(key) return #key .. ':' .. key end

-- fmember is a delivery's member in its (source, sink) FIFO ZSET.
local function fmember(key, seq, id) return fprefix(key) .. member(seq, id) end

-- first is the first FIFO member of an item key (its head), or nil.
local function first(fifo, key)
  local p = fprefix(key)
  return redis.call('ZRANGEBYLEX', fifo, '[' .. p, '(' .. p .. '\255', 'LIMIT', 0, 1)[1]
end

-- ceilms is a UnixNano string in whole milliseconds, rounded up (0 before
-- 1970), computed on the digits: Lua numbers cannot hold nanoseconds.
local function ceilms(n)
  if #n <= 6 or string.sub(n, 1, 1) == '-' then return 0 end
  local ms = tonumber(string.sub(n, 1, #n - 6))
  if string.sub(n, #n - 5) ~= '000000' then ms = ms + 1 end
  return ms
end

-- waiting adds n to the count of deliveries of sink waiting behind the head
-- of their item.
local function waiting(head, sink, n)
  if n ~= 0 then
    local v = redis.call('HINCRBY', head, 'w:' .. sink, n)
    if v <= 0 then redis.call('HDEL', head, 'w:' .. sink) end
  end
end

-- enqueue adds a live delivery at the end of its item's FIFO and to the live
-- ZSET (at score, its due time) and, when the item has no outstanding
-- delivery, makes it the head: due at score.
local function enqueue(head, due, fifo, live, sink, key, seq, id, sc)
  local busy = first(fifo, key)
  redis.call('ZADD', fifo, 0, fmember(key, seq, id))
  redis.call('ZADD', live, sc, member(seq, id))
  if busy then waiting(head, sink, 1) else redis.call('ZADD', due, sc, member(seq, id)) end
end

-- promote makes the oldest waiting delivery of an item key its head, due at
-- the later of now and its own due time (the live ZSET follows). It returns
-- '1' if it promoted one.
local function promote(head, out, due, fifo, live, sink, key, nowNano, nowMs)
  for _ = 1, 100 do
    local fm = first(fifo, key)
    if not fm then return '0' end
    local m = string.sub(fm, #fprefix(key) + 1)
    if redis.call('ZSCORE', due, m) then return '0' end -- a head already
    local id = string.sub(m, 21)
    local r = redis.call('HGET', out, id)
    if r then
      local f = parse(r)
      local sc = ceilms(f[3])
      if sc < tonumber(nowMs) then
        sc = nowMs
        f[3] = nowNano
        redis.call('HSET', out, id, build(f))
      else
        sc = string.format('%.0f', sc)
      end
      redis.call('ZADD', due, sc, m)
      redis.call('ZADD', live, sc, m)
      waiting(head, sink, -1)
      return '1'
    end
    redis.call('ZREM', fifo, fm) -- its record is gone
    redis.call('ZREM', live, m)
    waiting(head, sink, -1)
  end
  return '0'
end

-- retrying reports whether a record's attempts field counts as a retry.
local function retrying(attempts) return tonumber(attempts) > 0 end

-- counter adds n to the count of retrying deliveries of sink.
local function counter(head, sink, n)
  if n ~= 0 then
    local v = redis.call('HINCRBY', head, 'r:' .. sink, n)
    if v <= 0 then redis.call('HDEL', head, 'r:' .. sink) end
  end
end
`

// commitLua applies a commit. KEYS: head, items, meta, out, then per sink
// its due, FIFO and live ZSETs. ARGV: expected generation, replace meta (1/0),
// number of deletes, upserts, meta entries and deliveries, the sink names
// (one per due/FIFO pair), then the deletes, upsert pairs, meta pairs, and
// per delivery: sink index (1-based), id, score, item key, record tail
// (everything after the seq). It returns {'conflict', stored generation} or
// {'ok', sink, version, earliest, ...} for every sink that got a delivery.
const commitLua = luaPrelude + `
local gen = redis.call('HGET', KEYS[1], 'gen') or '0'
if gen ~= ARGV[1] then return {'conflict', gen} end
local nsinks = (#KEYS - 4) / 3
local ndel, nup, nmeta, ndeliv = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local i = 7 + nsinks
local function chunked(cmd, key, n, width)
  local per = 500 * width
  local last = i + n * width - 1
  while i <= last do
    local j = math.min(i + per - 1, last)
    redis.call(cmd, key, unpack(ARGV, i, j))
    i = j + 1
  end
end
chunked('HDEL', KEYS[2], ndel, 1)
chunked('HSET', KEYS[2], nup, 2)
if ARGV[2] == '1' then redis.call('DEL', KEYS[3]) end
chunked('HSET', KEYS[3], nmeta, 2)
redis.call('HINCRBY', KEYS[1], 'gen', 1)
local touched = {}
for _ = 1, ndeliv do
  local k, id, sc, key, tail = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  i = i + 5
  if redis.call('HEXISTS', KEYS[4], id) == 0 then
    local seq = string.format('%d', redis.call('HINCRBY', KEYS[1], 'seq', 1))
    local rec = '1|' .. #seq .. ':' .. seq .. tail
    local sink = ARGV[6 + k]
    redis.call('HSET', KEYS[4], id, rec)
    enqueue(KEYS[1], KEYS[2 + 3 * k], KEYS[3 + 3 * k], KEYS[4 + 3 * k], sink, key, seq, id, sc)
    local c = string.find(tail, ':', 1, true)
    local attempts = string.sub(tail, c + 1, c + tonumber(string.sub(tail, 1, c - 1)))
    if retrying(attempts) then counter(KEYS[1], sink, 1) end
    touched[k] = true
  end
end
local res = {'ok'}
for k = 1, nsinks do
  if touched[k] then
    local sink = ARGV[6 + k]
    res[#res + 1] = sink
    res[#res + 1] = bump(KEYS[1], sink)
    res[#res + 1] = earliest(KEYS[2 + 3 * k])
  end
end
return res
`

// claimLua claims due deliveries of one (source, sink). KEYS: head, out,
// due. ARGV: now (ms), lease end (ms), limit, sink. It returns {version,
// earliest, {record, score, record, score, ...}}.
const claimLua = luaPrelude + `
local ms = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for j = 1, #ms, 2 do
  local m = ms[j]
  local r = redis.call('HGET', KEYS[2], string.sub(m, 21))
  if r then
    redis.call('ZADD', KEYS[3], ARGV[2], m)
    out[#out + 1] = r
    out[#out + 1] = ms[j + 1]
  else
    redis.call('ZREM', KEYS[3], m)
  end
end
local v = bump(KEYS[1], ARGV[4])
return {v, earliest(KEYS[3]), out}
`

// settleManyLua settles deliveries of one (source, sink) in one call: it
// acks, retries or buries each (a delivery is the head of its item when it
// is in the due ZSET; acking or burying a head promotes the item's next
// delivery, retrying one that waits leaves it waiting), and bumps the
// pair's index version once. KEYS: head,
// out, due, dead, fifo, live. ARGV: sink, now (UnixNano), now (ms), then per
// delivery six values: op, id, attempts, at, at (ms), last error. It
// returns one code per delivery ('ok', 'missing', 'dead' or 'sink:' and the
// record's sink; only 'ok' changed anything), then the new index version,
// the earliest due score and '1' when a retry or a promotion calls for an
// index update, else '0'.
const settleManyLua = luaPrelude + `
local sink, nowNano, nowMs = ARGV[1], ARGV[2], ARGV[3]
local function one(op, id, attempts, at, atMs, lastErr)
  local r = redis.call('HGET', KEYS[2], id)
  if not r then return 'missing', false end
  local f = parse(r, op == 'ack' and 10 or nil) -- 10: the item key
  if f[6] ~= sink then return 'sink:' .. f[6], false end
  if f[4] ~= '' then return 'dead', false end
  local m, fm = member(f[1], id), fmember(f[10], f[1], id)
  local was = retrying(f[2]) and 1 or 0
  if op == 'retry' then
    local head = redis.call('ZSCORE', KEYS[3], m)
    local waits = (not head) and redis.call('ZSCORE', KEYS[5], fm)
    f[2], f[3], f[5] = attempts, at, lastErr
    redis.call('HSET', KEYS[2], id, build(f))
    if not waits then redis.call('ZADD', KEYS[3], atMs, m) end
    redis.call('ZADD', KEYS[6], atMs, m)
    counter(KEYS[1], sink, (retrying(f[2]) and 1 or 0) - was)
    return 'ok', true
  end
  -- A head is in the due ZSET; a delivery waiting behind one is only in
  -- the FIFO. What ZREM removed says which (one call fewer than asking).
  local head = redis.call('ZREM', KEYS[3], m) == 1
  local waits = redis.call('ZREM', KEYS[5], fm) == 1 and not head
  redis.call('ZREM', KEYS[6], m)
  if waits then waiting(KEYS[1], sink, -1) end
  counter(KEYS[1], sink, -was)
  if op == 'ack' then
    redis.call('HDEL', KEYS[2], id)
  else
    f[2], f[4], f[5] = attempts, at, lastErr
    redis.call('HSET', KEYS[2], id, build(f))
    redis.call('ZADD', KEYS[4], atMs, m)
  end
  if head and promote(KEYS[1], KEYS[2], KEYS[3], KEYS[5], KEYS[6], sink, f[10], nowNano, nowMs) == '1' then
    return 'ok', true
  end
  return 'ok', false
end
local out, sync, any = {}, '0', false
for i = 4, #ARGV, 6 do
  local code, changed = one(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5])
  out[#out + 1] = code
  if code == 'ok' then any = true end
  if changed then sync = '1' end
end
if any then
  out[#out + 1] = bump(KEYS[1], sink)
else
  out[#out + 1] = ''
end
out[#out + 1] = earliest(KEYS[3])
out[#out + 1] = sync
return out
`

// replayLua moves dead letters of one (source, sink) back into the outbox.
// KEYS: head, out, due, dead, FIFO, live. ARGV: sink, now (UnixNano), now (ms),
// then the ids; no ids means every dead letter. With ids it moves all or
// nothing and returns {'missing', id} for one that is not a dead letter of
// sink here. The moved ones get fresh sequence numbers in their old commit
// order and queue behind the outstanding deliveries of their items (see
// enqueue). It returns {'ok', moved, version, earliest}.
const replayLua = luaPrelude + `
local sink = ARGV[1]
local ids = {}
local all = #ARGV < 4
if all then
  for _, m in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do ids[#ids + 1] = string.sub(m, 21) end
else
  for j = 4, #ARGV do ids[#ids + 1] = ARGV[j] end
end
local recs = {}
for _, id in ipairs(ids) do
  local r = redis.call('HGET', KEYS[2], id)
  local f = r and parse(r)
  if not f or f[4] == '' or f[6] ~= sink then
    if not all then return {'missing', id} end
  else
    recs[#recs + 1] = f
  end
end
table.sort(recs, function(a, b) return tonumber(a[1]) < tonumber(b[1]) end)
for _, f in ipairs(recs) do
  redis.call('ZREM', KEYS[4], member(f[1], f[7]))
  local seq = string.format('%d', redis.call('HINCRBY', KEYS[1], 'seq', 1))
  f[1], f[2], f[3], f[4] = seq, '0', ARGV[2], ''
  redis.call('HSET', KEYS[2], f[7], build(f))
  enqueue(KEYS[1], KEYS[3], KEYS[5], KEYS[6], sink, f[10], seq, f[7], ARGV[3])
end
if all then
  -- drop index entries whose record is gone
  for _, m in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do redis.call('ZREM', KEYS[4], m) end
end
local v = bump(KEYS[1], sink)
return {'ok', #recs, v, earliest(KEYS[3])}
`

// peekLua reads the index state of some sinks of one source without
// changing it. KEYS: head, then one due ZSET per sink. ARGV: the sinks. It
// returns {version, earliest, ...} per sink (an empty version: no such sink).
const peekLua = `
local res = {}
for j = 1, #ARGV do
  res[#res + 1] = redis.call('HGET', KEYS[1], 'v:' .. ARGV[j]) or ''
  local m = redis.call('ZRANGE', KEYS[1 + j], 0, 0, 'WITHSCORES')
  res[#res + 1] = m[2] or ''
end
return res
`

// statsLua counts the outbox of some sinks of one source. KEYS: head, then
// a due and a dead ZSET per sink. ARGV: the sinks. It returns {live,
// retrying, dead, ...} per sink; live counts the heads in the due ZSET and
// the deliveries waiting behind them.
const statsLua = `
local res = {}
for j = 1, #ARGV do
  res[#res + 1] = redis.call('ZCARD', KEYS[2 * j]) + tonumber(redis.call('HGET', KEYS[1], 'w:' .. ARGV[j]) or '0')
  res[#res + 1] = tonumber(redis.call('HGET', KEYS[1], 'r:' .. ARGV[j]) or '0')
  res[#res + 1] = redis.call('ZCARD', KEYS[2 * j + 1])
end
return res
`

// liveLua reads one page of the live ZSET of one (source, sink). KEYS:
// head, due, FIFO, out, live. ARGV: sink, the member the previous page
// ended with (empty: from the start), its score, the page size. The live
// ZSET holds as many members as the due ZSET and the waiting count
// together when it is in step; when it is not (data written by a
// pollbridge without live ZSETs, or by one during a rolling upgrade), it
// is first rebuilt from the due and FIFO ZSETs and the records. A page
// starts after the previous member; if that one moved meanwhile, after
// every member with its score. It returns {member, score, ...}.
const liveLua = luaPrelude + `
local sink = ARGV[1]
local want = redis.call('ZCARD', KEYS[2]) + tonumber(redis.call('HGET', KEYS[1], 'w:' .. sink) or '0')
if redis.call('ZCARD', KEYS[5]) ~= want then
  redis.call('DEL', KEYS[5])
  local function add(m)
    local r = redis.call('HGET', KEYS[4], string.sub(m, 21))
    if r then
      local f = parse(r)
      if f[4] == '' and f[6] == sink then redis.call('ZADD', KEYS[5], string.format('%.0f', ceilms(f[3])), m) end
    end
  end
  for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do add(m) end
  for _, fm in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
    local c = string.find(fm, ':', 1, true)
    local m = string.sub(fm, c + 1 + tonumber(string.sub(fm, 1, c - 1)))
    if not redis.call('ZSCORE', KEYS[2], m) then add(m) end
  end
end
local start = 0
if ARGV[2] ~= '' then
  local r = redis.call('ZRANK', KEYS[5], ARGV[2])
  local sc = redis.call('ZSCORE', KEYS[5], ARGV[2])
  if r and tonumber(sc) == tonumber(ARGV[3]) then
    start = r + 1
  else
    start = redis.call('ZCOUNT', KEYS[5], '-inf', ARGV[3])
  end
end
return redis.call('ZRANGE', KEYS[5], start, start + tonumber(ARGV[4]) - 1, 'WITHSCORES')
`

// deadLua lists dead letters. KEYS: out, then dead ZSETs. It returns the
// records, in index order per ZSET.
const deadLua = `
local res = {}
for j = 2, #KEYS do
  for _, m in ipairs(redis.call('ZRANGE', KEYS[j], 0, -1)) do
    local r = redis.call('HGET', KEYS[1], string.sub(m, 21))
    if r then res[#res + 1] = r end
  end
end
return res
`

// syncLua records one (source, sink) entry of a sink's ready index, unless
// a newer version was recorded already. KEYS: ready ZSET, versions hash.
// ARGV: source, version, earliest (empty removes the source). It returns 1 when
// it applied the update.
const syncLua = `
local old = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if tonumber(ARGV[2]) <= old then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if ARGV[3] == '' then redis.call('ZREM', KEYS[1], ARGV[1]) else redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1]) end
return 1
`

// startPollsLua takes or extends the leases of one or more ticks and, for
// each one it holds, reads the source's generation and meta. KEYS: per tick,
// lease, head and meta. ARGV: owner, ttl (ms). It returns one string, read
// by parseStarts: per tick, '0' when another owner holds the lease; 'E' and
// the error as <length>:<bytes> when a command failed (a key of the wrong
// type: that tick fails, the others go on); else '1', the number of meta
// fields, ':', then the generation (empty for none) and each meta field and
// value as <length>:<bytes>. One string, not nested lists: go-redis makes
// one Go value of it instead of one per field.
const startPollsLua = `
local owner, ttl, out, n = ARGV[1], ARGV[2], {}, 0
local function put(s) n = n + 1; out[n] = s end
local function failed(r) return type(r) == 'table' and r.err end
for i = 1, #KEYS, 3 do
  local held = redis.pcall('SET', KEYS[i], owner, 'NX', 'PX', ttl)
  if not failed(held) and not held then
    held = redis.pcall('GET', KEYS[i])
    if not failed(held) then
      held = held == owner and redis.pcall('PEXPIRE', KEYS[i], ttl)
    end
  end
  local gen, meta
  if held and not failed(held) then
    gen = redis.pcall('HGET', KEYS[i + 1], 'gen') or ''
    meta = redis.pcall('HGETALL', KEYS[i + 2])
  end
  local err = failed(held) or failed(gen) or failed(meta)
  if err then
    put('E' .. #err .. ':' .. err)
  elseif not held then
    put('0')
  else
    put('1' .. (#meta / 2) .. ':' .. #gen .. ':' .. gen)
    for j = 1, #meta do put(#meta[j] .. ':' .. meta[j]) end
  end
end
return table.concat(out)
`

// unleaseLua drops a lease if owner holds it. KEYS: lease. ARGV: owner.
const unleaseLua = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`

// scripts holds the Store's compiled scripts.
type scripts struct {
	commit, claim, settleMany, replay, peek, stats, live, dead, sync, unlease, startPolls *redis.Script
}

func newScripts() *scripts {
	return &scripts{
		commit:  redis.NewScript(commitLua),
		claim:   redis.NewScript(claimLua),
		replay:  redis.NewScript(replayLua),
		peek:    redis.NewScript(peekLua),
		stats:   redis.NewScript(statsLua),
		live:    redis.NewScript(liveLua),
		dead:    redis.NewScript(deadLua),
		sync:    redis.NewScript(syncLua),
		unlease: redis.NewScript(unleaseLua),

		startPolls: redis.NewScript(startPollsLua),
		settleMany: redis.NewScript(settleManyLua),
	}
}

// load loads every script on every node (after a restart or failover the
// script cache is empty).
func (sc *scripts) load(ctx context.Context, c redis.Scripter) error {
	for _, s := range []*redis.Script{sc.commit, sc.claim, sc.replay, sc.peek, sc.stats, sc.live, sc.dead, sc.sync, sc.unlease, sc.startPolls, sc.settleMany} {
		if err := s.Load(ctx, c).Err(); err != nil {
			return fmt.Errorf("load scripts: %w", err)
		}
	}
	return nil
}
