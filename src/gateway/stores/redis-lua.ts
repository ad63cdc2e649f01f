/**
 * Lua scripts for the Redis store: each mailbox operation is one atomic
 * script, so gateways on several nodes can push into and deliver from the
 * same mailbox. A message is JSON {id, p: base64 payload, n: bytes,
 * e: enqueuedAt, x: expiresAt, s: seq, and on a push that waits w, wu: the
 * node to tell of its acknowledgement, until when}; a mailbox is a list of them plus a
 * hash {holder, session, high, bytes}, a hash of the message ids it holds, and for a
 * minute what its holder's acknowledgements removed that the holder has not
 * yet said it read (see ACK); each mailbox shard's `expiry` is a sorted set of
 * its mailbox ids scored by at most the earliest expiresAt in them: a lower
 * bound, lowered by ENQUEUE and left as it is when messages go (ACK, an
 * eviction), which can only raise the earliest; EXPIRE, when the score comes
 * due, sets it to the true earliest. So no script but EXPIRE reads a whole
 * mailbox to keep the index: an ACK costs what it removes, not the mailbox
 * (acknowledging a full mailbox one message at a time was quadratic). A mailbox's keys and
 * its shard's expiry index share a hash tag, so each script touches one slot of
 * a Redis Cluster (EXPIRE reaches mailboxes by name: same tag, same slot).
 */

/**
 * A Lua decode that does not abort the script: an entry cjson cannot read
 * (written by a version before the store wrote only JSON it can read, e.g.
 * with a lone surrogate) is dropped where met instead of wedging its mailbox
 * or its shard's sweep for good.
 */
const DEC = `
local function dec(s)
  local ok, v = pcall(cjson.decode, s)
  if ok and type(v) == 'table' then return v end
  return nil
end`;

/**
 * ACK and ACK_RESUMED (KEYS: list, meta, expiry, ids; ARGV[3]: mailbox id): pops the numbered
 * messages at the head with seq ≤ upTo (unreadable entries too), each appended to `out` without
 * its payload (with its reportTo, w and wu, if any); an emptied mailbox goes whole (numbering restarts above the next holder's afterSeq).
 */
const POP_ACKED = `
local function popAcked(upTo, out)
  while true do
    local head = redis.call('LINDEX', KEYS[1], 0)
    if not head then break end
    local m = dec(head)
    if not m then
      redis.call('LPOP', KEYS[1])
    else
      if m.s == 0 or m.s > upTo then break end
      redis.call('LPOP', KEYS[1])
      redis.call('HINCRBY', KEYS[2], 'bytes', -m.n)
      redis.call('HDEL', KEYS[4], m.id)
      table.insert(out, cjson.encode({ id = m.id, p = '', n = 0, e = m.e, x = m.x, s = m.s, w = m.w, wu = m.wu }))
    end
  end
end
local function dropIfEmpty()
  if redis.call('LLEN', KEYS[1]) == 0 then
    redis.call('DEL', KEYS[2], KEYS[4])
    redis.call('ZREM', KEYS[3], ARGV[3])
  end
end`;

/** TAKE: the mailbox's unreadable entries (see DEC) go before numbering. */
const DROP_UNREADABLE = `
local good = {}
for _, raw in ipairs(all) do if dec(raw) then table.insert(good, raw) end end
if #good < #all then
  redis.call('DEL', KEYS[1])
  if #good > 0 then redis.call('RPUSH', KEYS[1], unpack(good)) end
  all = good
  if #all == 0 then return {} end
end`;

/**
 * KEYS: list, meta, expiry, ids. ARGV: message json, bytes, maxMessages,
 * maxBytes, mailbox id, expiresAt, message id, now (the message's enqueuedAt),
 * live holder ('' for none: see MailboxLimits.liveHolder).
 * Returns evicted messages. While the mailbox is bound to the live holder,
 * what it numbered (a prefix) is not evicted: the oldest not numbered (a
 * suffix, short while it flushes) go, and if they make no room the new
 * message is returned, not queued. A message whose id the mailbox holds already is
 * not queued again: a retried push (the backend's, or a command re-sent after
 * its answer was lost); but a retry whose push waits (w, wu) makes the held
 * copy report its acknowledgement to the retry's node, until the retry's time:
 * the first try's node, or a wait already over, answered the retry `queued`
 * at its waitMs though the device acknowledged. A copy whose time is over (expiresAt ≤ now) is not
 * held: the mailbox's messages whose time is over go first, returned before
 * the evicted (the caller reports them expired), and the message is queued.
 */
export const ENQUEUE = `${DEC}
local gone = {}
if redis.call('HEXISTS', KEYS[4], ARGV[7]) == 1 then
  if redis.call('LLEN', KEYS[1]) > 0 then
    local now = tonumber(ARGV[8])
    if not now then return {} end
    local all = redis.call('LRANGE', KEYS[1], 0, -1)
    local held = nil
    local at = 0
    for i = #all, 1, -1 do
      local m = dec(all[i])
      if m and m.id == ARGV[7] then held = m; at = i; break end
    end
    if not held then return {} end
    if held.x > now then
      -- A retry that waits: the node it waits on is told of the acknowledgement, not the first try's.
      local retry = dec(ARGV[1])
      if retry and retry.w ~= nil and (retry.w ~= held.w or retry.wu ~= held.wu) then
        held.w = retry.w
        held.wu = retry.wu
        redis.call('LSET', KEYS[1], at - 1, cjson.encode(held))
      end
      return {}
    end
    local keep = {}
    for _, raw in ipairs(all) do
      local m = dec(raw)
      if m and m.x <= now then
        redis.call('HINCRBY', KEYS[2], 'bytes', -m.n)
        redis.call('HDEL', KEYS[4], m.id)
        table.insert(gone, raw)
      else
        table.insert(keep, raw)
      end
    end
    redis.call('DEL', KEYS[1])
    if #keep > 0 then redis.call('RPUSH', KEYS[1], unpack(keep)) end
  else
    -- An index left by a version that did not keep one (a rolling upgrade emptied the mailbox): gone.
    redis.call('DEL', KEYS[4])
  end
end
local maxMessages = tonumber(ARGV[3])
local maxBytes = tonumber(ARGV[4])
local evicted = {}
if ARGV[9] and ARGV[9] ~= '' and redis.call('HGET', KEYS[2], 'holder') == ARGV[9] then
  local len = redis.call('LLEN', KEYS[1])
  local from = len
  local tail = {}
  while from > 0 do
    local raw = redis.call('LINDEX', KEYS[1], from - 1)
    local m = dec(raw)
    if m and m.s ~= 0 then break end
    from = from - 1
    table.insert(tail, 1, { raw, m })
  end
  local n = len + 1
  local size = tonumber(redis.call('HGET', KEYS[2], 'bytes') or '0') + tonumber(ARGV[2])
  local k = 0
  while n > 1 and (n > maxMessages or size > maxBytes) and k < #tail do
    k = k + 1
    if tail[k][2] then size = size - tail[k][2].n end
    n = n - 1
  end
  if n > 1 and (n > maxMessages or size > maxBytes) then
    table.insert(gone, ARGV[1])
    return gone
  end
  if k > 0 then
    if from == 0 then redis.call('DEL', KEYS[1]) else redis.call('LTRIM', KEYS[1], 0, from - 1) end
    for j = 1, #tail do
      local t = tail[j]
      if j > k then redis.call('RPUSH', KEYS[1], t[1])
      elseif t[2] then
        redis.call('HINCRBY', KEYS[2], 'bytes', -t[2].n)
        redis.call('HDEL', KEYS[4], t[2].id)
        table.insert(evicted, t[1])
      end
    end
  end
end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[4], ARGV[7], 1)
local bytes = redis.call('HINCRBY', KEYS[2], 'bytes', tonumber(ARGV[2]))
while redis.call('LLEN', KEYS[1]) > 1 and (redis.call('LLEN', KEYS[1]) > maxMessages or bytes > maxBytes) do
  local old = redis.call('LPOP', KEYS[1])
  local om = dec(old)
  if om then
    bytes = redis.call('HINCRBY', KEYS[2], 'bytes', -om.n)
    redis.call('HDEL', KEYS[4], om.id)
    table.insert(evicted, old)
  end
end
local score = redis.call('ZSCORE', KEYS[3], ARGV[5])
if (not score) or tonumber(ARGV[6]) < tonumber(score) then redis.call('ZADD', KEYS[3], ARGV[6], ARGV[5]) end
for _, raw in ipairs(evicted) do table.insert(gone, raw) end
return gone
`;

/**
 * KEYS: list, meta. ARGV: holder (connection id), afterSeq, the holder's
 * session (optional: see ACK_RESUMED). Binds the mailbox
 * to the holder; a new holder renumbers everything left. Numbers continue above
 * max(high, afterSeq), never reused. Returns messages with seq > afterSeq; the
 * holder it is bound to already costs what it is handed, not the mailbox.
 */
export const TAKE = `${DEC}
local holder = redis.call('HGET', KEYS[2], 'holder')
local afterSeq = tonumber(ARGV[2])
local next = math.max(tonumber(redis.call('HGET', KEYS[2], 'high') or '0'), afterSeq)
-- Bound to this holder already, the mailbox is its numbered messages, ascending, then new ones
-- (seq 0): what it hands out is a suffix, read from the end in growing chunks. A flush per push read
-- and decoded the whole of a full mailbox its device never acknowledges (1,000 messages, 1 MiB).
if holder == ARGV[1] then
  local len = redis.call('LLEN', KEYS[1])
  local from = len
  local found = {}
  local chunk = 16
  local whole = true
  while from > 0 and whole do
    local lo = math.max(0, from - chunk)
    local part = redis.call('LRANGE', KEYS[1], lo, from - 1)
    for j = #part, 1, -1 do
      local m = dec(part[j])
      -- Unreadable (see DEC): the whole-mailbox path below drops it.
      if not m then found = nil; whole = false; break end
      if m.s ~= 0 and m.s <= afterSeq then whole = false; break end
      table.insert(found, { lo + j - 1, m, part[j] })
    end
    from = lo
    chunk = chunk * 2
  end
  if found then
    local out = {}
    for k = #found, 1, -1 do
      local f = found[k]
      local raw = f[3]
      if f[2].s == 0 then
        next = next + 1
        f[2].s = next
        raw = cjson.encode(f[2])
        redis.call('LSET', KEYS[1], f[1], raw)
      end
      table.insert(out, raw)
    end
    if len > 0 then redis.call('HSET', KEYS[2], 'high', next) end
    return out
  end
end
local all = redis.call('LRANGE', KEYS[1], 0, -1)
if #all == 0 then return {} end
local rebind = holder ~= ARGV[1]
local out = {}
${DROP_UNREADABLE}
for i, raw in ipairs(all) do
  local m = cjson.decode(raw)
  if rebind or m.s == 0 then
    next = next + 1
    m.s = next
    raw = cjson.encode(m)
    redis.call('LSET', KEYS[1], i - 1, raw)
  end
  if m.s > afterSeq then table.insert(out, raw) end
end
redis.call('HSET', KEYS[2], 'holder', ARGV[1], 'session', ARGV[3] or '', 'high', next)
return out
`;

/**
 * KEYS: list, meta, expiry, ids, unread answers. ARGV: holder, upTo, mailbox
 * id, answeredUpTo (optional). Removes and returns the messages with seq ≤ upTo while
 * the holder holds the mailbox. What the holder's acknowledgements removed is
 * kept (without payloads, a minute from the last) until a later one says its
 * answer was read (answeredUpTo: the caller has reported every message it
 * removed up to there), and every answer holds all of it: an acknowledgement
 * re-sent after its answer was lost answers what the first removed, and so
 * does a later one (ack(7) after ack(5) whose answer never came), else those
 * messages would never be reported delivered. The caller reports each once
 * (by seq). What another holder's acknowledgements removed is not kept once
 * this holder removes something.
 */
export const ACK = `${DEC}${POP_ACKED}
local upTo = tonumber(ARGV[2])
local out = {}
local had = 0
local last = redis.call('GET', KEYS[5])
if last then
  local l = dec(last)
  if l and l.h == ARGV[1] and type(l.m) == 'table' then
    had = #l.m
    -- Without answeredUpTo, every earlier answer counts as read but the same call's (re-sent).
    local answered = tonumber(ARGV[4] or (l.u == upTo and '-1' or '1e308'))
    for _, raw in ipairs(l.m) do
      local m = dec(raw)
      if m and m.s > answered then table.insert(out, raw) end
    end
  end
end
local unread = #out
if redis.call('HGET', KEYS[2], 'holder') ~= ARGV[1] then return out end
popAcked(upTo, out)
if #out > unread then
  redis.call('SET', KEYS[5], cjson.encode({ h = ARGV[1], u = upTo, m = out }), 'PX', 60000)
elseif unread < had then
  if unread == 0 then redis.call('DEL', KEYS[5]) else redis.call('SET', KEYS[5], cjson.encode({ h = ARGV[1], u = upTo, m = out }), 'KEEPTTL') end
end
dropIfEmpty()
return out
`;

/**
 * KEYS: list, meta, expiry, ids. ARGV: session, upTo, mailbox id. A resume's
 * HELLO lastSeq (see MailboxStore.ackResumed): removes and returns the
 * numbered messages with seq ≤ upTo while the mailbox's holder is a link of
 * that session, in the same script as the check, so no take of another link
 * (another node's flush) can renumber them between the two.
 */
export const ACK_RESUMED = `${DEC}${POP_ACKED}
local upTo = tonumber(ARGV[2])
local out = {}
local session = redis.call('HGET', KEYS[2], 'session')
if (not session) or session == '' or session ~= ARGV[1] then return out end
popAcked(upTo, out)
dropIfEmpty()
return out
`;

/**
 * KEYS: expiry. ARGV: now, key prefix of mailbox lists, of metas, of id
 * indexes, most entries to read. Removes every message whose expiresAt ≤ now
 * from the due mailboxes it reads, starting none once it has read that many
 * entries (the rest stay due, for the next call); returns [1 if it stopped
 * so, else 0, mailbox id, message json without its payload, ...]. Nobody
 * reads an expired message's payload, and a round of full mailboxes due at
 * once (1,000 of 1 MiB in one shard) made one answer of gigabytes, and one
 * script that held Redis for seconds.
 */
export const EXPIRE = `${DEC}
local now = tonumber(ARGV[1])
local budget = tonumber(ARGV[5])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1000)
local out = { 0 }
local read = 0
for _, mbid in ipairs(due) do
  if read >= budget then
    out[1] = 1
    break
  end
  local list = ARGV[2] .. mbid
  local meta = ARGV[3] .. mbid
  local ids = ARGV[4] .. mbid
  local all = redis.call('LRANGE', list, 0, -1)
  read = read + #all
  local keep = {}
  local min = nil
  for _, raw in ipairs(all) do
    local m = dec(raw)
    if not m then
      -- Unreadable (see DEC): dropped, not kept.
    elseif m.x <= now then
      redis.call('HINCRBY', meta, 'bytes', -m.n)
      redis.call('HDEL', ids, m.id)
      table.insert(out, mbid)
      table.insert(out, cjson.encode({ id = m.id, p = '', n = m.n, e = m.e, x = m.x, s = m.s }))
    else
      table.insert(keep, raw)
      if min == nil or m.x < min then min = m.x end
    end
  end
  -- Rewritten only if something expired: a score that came due early (its earliest message was
  -- acknowledged) is only corrected.
  if #keep < #all then
    redis.call('DEL', list)
    if #keep > 0 then redis.call('RPUSH', list, unpack(keep)) else redis.call('DEL', meta, ids) end
  end
  if min == nil then redis.call('ZREM', KEYS[1], mbid) else redis.call('ZADD', KEYS[1], min, mbid) end
end
-- More due mailboxes than one call looks at.
if #due == 1000 then out[1] = 1 end
return out
`;

/** MARK_INBOUND's script, shared with MARK_INBOUND_CLAIMED. */
const MARK_INBOUND_BODY = `
local now = tonumber(ARGV[3])
local win = tonumber(ARGV[4])
local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if at and tonumber(at) > now - win then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - win)
local kept = tonumber(ARGV[2])
local size = redis.call('ZCARD', KEYS[1])
if size > kept then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, size - kept - 1) end
redis.call('PEXPIRE', KEYS[1], win)
return 1
`;

/**
 * KEYS: the device's inbound ids (sorted set scored by when recorded, wall ms).
 * ARGV: id, most kept, now, window ms. 1 if new (recorded), 0 if seen within
 * the window. Ids past the window or beyond the count go; the key expires with
 * the window, so a device that stops sending leaves nothing behind.
 */
export const MARK_INBOUND = MARK_INBOUND_BODY;

/**
 * MARK_INBOUND that also ends the id's claim (CLAIM_INBOUND) if ARGV[5]
 * holds it: KEYS[2] the claim. One request for the record and the claim's
 * end, as the claim and the duplicate check are one.
 */
export const MARK_INBOUND_CLAIMED = `
if redis.call('GET', KEYS[2]) == ARGV[5] then redis.call('DEL', KEYS[2]) end
${MARK_INBOUND_BODY}`;

/** KEYS: the user's known-devices hash. ARGV: device id, the time it was read with. Forgets it only if nobody remembered it since (a handshake meanwhile). */
export const FORGET_DEVICE = `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
`;

/**
 * KEYS: the user's known devices (hash device → until, wall ms), the user's
 * presence hash. ARGV: device, until, most per user, ttl ms, the user's key
 * prefix. A new device at the bound evicts the ones not online whose time
 * ends first, back to one below the bound where they allow, and with each
 * what the user's slot keeps for that device (its inbound ids, its session
 * index): one user's token making up device ids keeps at most that many
 * devices' state, besides the devices online. A device with a presence entry
 * is never evicted (it would lose its resume and its duplicate check while
 * connected); when every known device has one, the new device is remembered
 * beyond the bound all the same: its inbound ids (24 h) and session index are
 * written anyway, and only the hash can find them to evict them once it is
 * offline (not remembered, a user keeping the bound's devices connected had
 * every other device id it made up keep its state). With more than twice the
 * bound known (as many online), the hash is read only once an eighth of it has
 * no presence entry: what is not online then stays below that eighth. Returns the evicted
 * devices' session tokens (their records live in other slots of a cluster:
 * the caller deletes them). The hash expires with its newest entry.
 */
export const REMEMBER_DEVICE = `
local untilMs = tonumber(ARGV[2])
local prev = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if untilMs <= prev then return {} end
local tokens = {}
local max = tonumber(ARGV[3])
local n = redis.call('HLEN', KEYS[1])
-- Read whole only when there is something to evict: a new device of a user with many devices online
-- (a fleet under one user) read every one of them, O(n) per handshake and O(n^2) to bring n online.
-- Beyond twice the bound, only once about an eighth of the known devices have no presence entry
-- (each such read then evicts that many: O(1) a device, amortized).
if prev == 0 and n >= max and (n < 2 * max or 8 * (n - redis.call('HLEN', KEYS[2])) >= n) then
  local all = redis.call('HGETALL', KEYS[1])
  local off = {}
  for i = 1, #all, 2 do
    if redis.call('HEXISTS', KEYS[2], all[i]) == 0 then off[#off + 1] = { all[i], tonumber(all[i + 1]) } end
  end
  table.sort(off, function(a, b) return a[2] < b[2] end)
  for j = 1, math.min(#off, n - max + 1) do
    local oldest = off[j][1]
    redis.call('HDEL', KEYS[1], oldest)
    -- The device's keys are named with its id as encodeURIComponent writes it.
    local enc = string.gsub(oldest, "[^%w%-_%.!~%*'%(%)]", function(c) return string.format('%%%02X', string.byte(c)) end)
    redis.call('DEL', ARGV[5] .. 'in:' .. enc)
    local index = ARGV[5] .. 'dsess:' .. enc
    for _, t in ipairs(redis.call('ZRANGE', index, 0, -1)) do tokens[#tokens + 1] = t end
    redis.call('DEL', index)
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4])) end
return tokens
`;

/** KEYS: a key. ARGV: ttl ms. Makes an existing key with a TTL live at least that long. */
export const EXTEND_TTL = `
local t = redis.call('PTTL', KEYS[1])
if t >= 0 and t < tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1])) end
return t
`;

/** KEYS: session. ARGV: value, ttl ms, node id. Writes unless the stored record is held open by another node; 1 if written. */
export const SAVE_SESSION_UNLESS_OPEN = `
local raw = redis.call('GET', KEYS[1])
if raw then
  local on = cjson.decode(raw).record.openOn
  if type(on) == 'string' and on ~= ARGV[3] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`;

/**
 * KEYS: the device's session index (sorted set of tokens by first save).
 * ARGV: token, now, most per device, ttl ms. Records the token; returns the
 * tokens beyond `max` for the device (the oldest), which the caller deletes:
 * their records live in other slots of a cluster, so not from here. A new
 * token is scored above every one indexed, whatever the saving node's clock:
 * a node running behind had its just-saved session scored oldest, and
 * evicted at once when the device held its bound.
 */
export const INDEX_SESSION = `
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  local score = tonumber(ARGV[2])
  local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if top[2] and tonumber(top[2]) >= score then score = tonumber(top[2]) + 1 end
  redis.call('ZADD', KEYS[1], score, ARGV[1])
end
local n = redis.call('ZCARD', KEYS[1])
local max = tonumber(ARGV[3])
local old = {}
if n > max then
  old = redis.call('ZRANGE', KEYS[1], 0, n - max - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - max - 1)
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4])) end
return old
`;

/**
 * A user's presence and displaced hashes live at least `ttl` more (raised,
 * never lowered; a key an older version wrote without a TTL gets one). Open
 * links refresh it well within the TTL, so it ends only when every link that
 * wrote to it is gone: entries of a node that crashed for good and is never
 * read again (forgetDeadNodes runs on reads) do not stay in Redis for ever.
 */
const KEEP_PRESENCE = `
local function keep(ttl)
  for _, k in ipairs(KEYS) do
    if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end
  end
end
`;

/**
 * KEYS: presence hash, displaced hash. ARGV: deviceId, connectionId,
 * optionally an entry to put back (only if the displaced hash still holds it).
 * Removes the entry (or puts that one back) only if it is still that connection's; if a newer entry displaced it, it
 * is taken out of the displaced hash instead (the link is gone: no take-back
 * may revive it).
 */
export const SET_OFFLINE = `
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw or cjson.decode(raw).connectionId ~= ARGV[2] then
  -- Displaced by a newer link meanwhile: it must not be put back by that link's take-back.
  local d = redis.call('HGET', KEYS[2], ARGV[1])
  if d and cjson.decode(d).connectionId == ARGV[2] then redis.call('HDEL', KEYS[2], ARGV[1]) end
  return 0
end
-- Another node's entry is put back only if the displaced hash still holds its link: that node took
-- it out when the link closed, and putting it back would leave a ghost no one removes.
local back = nil
if ARGV[3] then
  local want = cjson.decode(ARGV[3])
  if want.nodeId == cjson.decode(raw).nodeId then back = ARGV[3]
  else
    local d = redis.call('HGET', KEYS[2], ARGV[1])
    if d and cjson.decode(d).connectionId == want.connectionId then back = ARGV[3] end
  end
end
if back then redis.call('HSET', KEYS[1], ARGV[1], back) else redis.call('HDEL', KEYS[1], ARGV[1]) end
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
`;

/**
 * KEYS: presence hash, displaced hash. ARGV: deviceId, the entry as read.
 * Removes the entry of a node taken for dead only if it is still the one
 * read: the node may have come back since, renewed its lease and written it
 * again (a node's every write differs: see RedisStore.presenceJson).
 */
export const FORGET_PRESENCE = `
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
`;

/**
 * KEYS: presence hash, displaced hash. ARGV: deviceId, entry json, the
 * writer's node id, ttl ms, the most devices the user may have online (0: no
 * bound). Writes the entry; returns the one it replaced ('' for none).
 * Another node's entry it replaced is kept beside it (the displaced
 * hash, one field per device) until the device's entry changes again, so a
 * writer that never got this answer can still put it back (TAKE_BACK).
 * Replacing an entry of the writer's own node, it keeps (and answers) the
 * other node's entry that one displaced, if still held: that entry's
 * writer may never have learnt it, and its node must hear it was replaced.
 * A device without an entry while the user has the most entries is not
 * written: nil. Counted here, in the write, so that handshakes on several
 * nodes cannot each see room and pass the bound together; entries of a node
 * that died count until they are replaced or forgotten (an over-count only).
 */
export const SET_ONLINE = `${KEEP_PRESENCE}
local old = redis.call('HGET', KEYS[1], ARGV[1])
-- Its own entry already: this write again (re-sent after its answer was lost). The answer is the
-- first one's: what it displaced, if another node's, is kept in the displaced hash.
if old and cjson.decode(old).connectionId == cjson.decode(ARGV[2]).connectionId then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  keep(tonumber(ARGV[4]))
  return redis.call('HGET', KEYS[2], ARGV[1]) or ''
end
local max = tonumber(ARGV[5] or '0')
if not old and max > 0 and redis.call('HLEN', KEYS[1]) >= max then return false end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if not old then redis.call('HDEL', KEYS[2], ARGV[1])
elseif cjson.decode(old).nodeId ~= ARGV[3] then redis.call('HSET', KEYS[2], ARGV[1], old)
else
  -- This node's own entry, which may have displaced another node's entry without its writer ever
  -- learning which (its answer lost): that one this write displaces too. Kept, and answered instead.
  local d = redis.call('HGET', KEYS[2], ARGV[1])
  if d then old = d end
end
keep(tonumber(ARGV[4]))
return old or ''
`;

/**
 * KEYS: presence hash, displaced hash. ARGV: deviceId, entry json,
 * connectionId. Writes the entry unless the device's entry is another
 * connection's (a newer link).
 */
export const RESTORE_ONLINE = `${KEEP_PRESENCE}
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if raw and cjson.decode(raw).connectionId ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[1])
keep(tonumber(ARGV[4]))
return 1
`;

/** KEYS: presence hash, displaced hash. ARGV: ttl ms. An open link's periodic refresh of its user's presence. */
export const TOUCH_PRESENCE = `${KEEP_PRESENCE}
keep(tonumber(ARGV[1]))
return 1
`;

/**
 * KEYS: presence hash, displaced hash. ARGV: deviceId, connectionId. Undoes
 * a SET_ONLINE whose answer was lost, if the entry is still that
 * connection's: puts back the other node's entry it displaced, or removes
 * it. Returns the entry put back ('' for none). If a newer link displaced
 * it meanwhile, it is taken out of the displaced hash instead (as
 * SET_OFFLINE does): the link is gone, and that newer link's take-back would
 * put it back, a ghost only a `check` to its node removes.
 */
export const TAKE_BACK = `
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw or cjson.decode(raw).connectionId ~= ARGV[2] then
  local d = redis.call('HGET', KEYS[2], ARGV[1])
  if d and cjson.decode(d).connectionId == ARGV[2] then redis.call('HDEL', KEYS[2], ARGV[1]) end
  return ''
end
local prev = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if prev then
  redis.call('HSET', KEYS[1], ARGV[1], prev)
  return prev
end
redis.call('HDEL', KEYS[1], ARGV[1])
return ''
`;

/**
 * KEYS: the node's lease, the store's epoch, the node's last-seen time, its
 * admin URL, the node directory (a sorted set of node ids by lease end), all
 * in one slot. ARGV: incarnation, lease ms, now, admin URL, node id. Renews
 * the lease and the node's place in the directory (nodes gone a day are
 * dropped from it); returns [the lease's previous holder, the epoch] ('' for none).
 * A script rather than MULTI: ioredis's cluster client may split a
 * transaction from its EXEC when it pipelines automatically.
 */
export const RENEW_LEASE = `
local prev = redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]), 'GET')
local epoch = redis.call('GET', KEYS[2])
redis.call('SET', KEYS[3], ARGV[3], 'PX', 86400000)
redis.call('SET', KEYS[4], ARGV[4], 'PX', tonumber(ARGV[2]))
redis.call('ZADD', KEYS[5], tonumber(ARGV[3]) + tonumber(ARGV[2]), ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', tonumber(ARGV[3]) - 86400000)
return { prev or '', epoch or '' }
`;

/**
 * KEYS: the device's inbound ids (as MARK_INBOUND), a client message id's
 * claim. ARGV: id, holder, ms, now, window ms. 2 if the id was recorded
 * within the window (seen: nothing claimed); else claims it for the holder
 * (or extends the holder's own claim): 1, or 0 while another holds it. The
 * duplicate check in the same request: a message costs no request more.
 */
export const CLAIM_INBOUND = `
local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if at and tonumber(at) > tonumber(ARGV[4]) - tonumber(ARGV[5]) then return 2 end
local v = redis.call('GET', KEYS[2])
if v and v ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', tonumber(ARGV[3]))
return 1
`;

/** KEYS: a client message id's claim. ARGV: holder. Ends the claim if it is the holder's. */
export const RELEASE_INBOUND = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;
