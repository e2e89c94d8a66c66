-- blt.kvcache: key/value caches for generating one position at a time.
--
--   local c = kvcache.new(dim, window)     window > 0: a ring of `window` positions, so
--                                          memory stays flat however long the output;
--                                          window 0: every position (grows by doubling)
--   local y = kvcache.block_step(block, x, c, pos)   one nn.TransformerBlock at position pos
--   local y = kvcache.block_chunk(block, x, c, pos0) the block at positions pos0.. of x [1,n,dim], after
--                                          what the cache holds (a prompt read in chunks: the work per
--                                          chunk is bounded by the chunk and the window, not the prompt)
--   c:reset()       forget every position (reset_on_newline); c:release() frees the storage now
--   c:ensure()      room for one more position (outside blt.scope: a grown buffer must outlive the step)
--
-- Keys are cached after RoPE, so a query needs no mask: every cached key is in its past
-- and, in a ring, within its window, and attention does not depend on the keys' order.
-- The caches are made outside blt.scope and live until released (or collected): a
-- step's own tensors are freed by the scope around the step.
local core = require "blt.core"

local kvcache = {}

-- Rows: a [1, capacity, dim] buffer of positions, a ring (window > 0) or growing.
local Rows = {}
Rows.__index = Rows

function kvcache.rows(dim, window)
    if math.type(dim) ~= "integer" or dim < 1 then error("blt.kvcache: dim must be an integer >= 1", 2) end
    if math.type(window) ~= "integer" or window < 0 then error("blt.kvcache: window must be an integer >= 0", 2) end
    local cap = window > 0 and window or 16
    return setmetatable({dim = dim, window = window, cap = cap, count = 0, T = core.zeros({1, cap, dim})}, Rows)
end

function Rows:size() return math.min(self.count, self.cap) end
function Rows:reset() self.count = 0 end
function Rows:release()
    if self.T then self.T:release() end
    self.T = nil
end

-- Room for one more row: a growing buffer doubles (amortised O(1) per row). Call it
-- outside blt.scope, since the new buffer must outlive the step (the steps below do).
function Rows:ensure(n)
    n = n or 1
    if self.window > 0 or self.count + n <= self.cap then return end
    local cap = self.cap
    while self.count + n > cap do cap = 2 * cap end
    local T = core.zeros({1, cap, self.dim})
    core.narrow(T, 2, 1, self.cap):copy(self.T)
    self.T:release()
    self.T, self.cap = T, cap
end

function Rows:append(x)
    if self.window == 0 and self.count == self.cap then
        error("blt.kvcache: no room for another row (call ensure() before the step's scope)", 2)
    end
    core.narrow(self.T, 2, self.count % self.cap + 1, 1):copy(x)
    self.count = self.count + 1
end

-- The rows held ([1, size, dim] view; in a ring, not in time order).
function Rows:view() return core.narrow(self.T, 2, 1, self:size()) end

-- The rows held, oldest first ([1, size, dim]; a copy when a ring has wrapped).
function Rows:ordered()
    if self.count <= self.cap then return core.narrow(self.T, 2, 1, self.count) end
    local start = self.count % self.cap -- the oldest row's slot (0-based)
    if start == 0 then return self.T end
    return core.concat({core.narrow(self.T, 2, start + 1, self.cap - start), core.narrow(self.T, 2, 1, start)}, 2)
end

-- Appends the n rows of x [1,n,dim] in order (a ring keeps the last `window`), in at
-- most two copies. A growing buffer needs ensure(n) first, outside blt.scope.
function Rows:append_block(x)
    local n = x:size(2)
    if self.window == 0 and self.count + n > self.cap then
        error(("blt.kvcache: no room for %d more rows (call ensure(%d) before the step's scope)"):format(n, n), 2)
    end
    local i = self.window > 0 and math.max(0, n - self.cap) or 0 -- rows a ring would overwrite at once
    local p = self.count + i
    while i < n do
        local slot = p % self.cap
        local run = math.min(n - i, self.cap - slot)
        core.narrow(self.T, 2, slot + 1, run):copy(core.narrow(x, 2, i + 1, run))
        i, p = i + run, p + run
    end
    self.count = self.count + n
end

-- A key/value cache: two Rows.
local Cache = {}
Cache.__index = Cache

function kvcache.new(dim, window)
    return setmetatable({k = kvcache.rows(dim, window), v = kvcache.rows(dim, window)}, Cache)
end
function Cache:size() return self.k:size() end
function Cache:reset() self.k:reset(); self.v:reset() end
function Cache:release() self.k:release(); self.v:release() end
function Cache:append(k, v) self.k:append(k); self.v:append(v) end
function Cache:ensure(n) self.k:ensure(n); self.v:ensure(n) end
function Cache:kv() return self.k:view(), self.v:view() end
function Cache:append_block(k, v) self.k:append_block(k); self.v:append_block(v) end

-- Self-attention of one position (x [1,1,dim], already normalised) at position pos.
function kvcache.attention_step(attn, x, cache, pos)
    local rope = {theta = attn.theta, positions = core.tensor({pos}, "int32")}
    local q = core.rope(attn.wq:forward(x), attn.heads, rope)
    cache:append(core.rope(attn.wk:forward(x), attn.heads, rope), attn.wv:forward(x))
    local K, V = cache:kv()
    return attn.wo:forward(core.attention(q, K, V, {heads = attn.heads}))
end

-- Self-attention of n positions pos0.. at once (x [1,n,dim], normalised) after the
-- positions the cache holds (the last `window` before pos0, or every one): queries see
-- the cached keys and their own causally, within the window, as their steps would.
-- Their keys and values are then appended.
function kvcache.attention_chunk(attn, x, cache, pos0)
    local n = x:size(2)
    local p = {}
    for i = 1, n do p[i] = pos0 + i - 1 end
    local rope = {theta = attn.theta, positions = core.tensor(p, "int32")}
    local q = core.rope(attn.wq:forward(x), attn.heads, rope)
    local k = core.rope(attn.wk:forward(x), attn.heads, rope)
    local v = attn.wv:forward(x)
    local held, K, V = cache:size(), k, v
    if cache.k.window == 0 then -- every position, in order: the keys are the buffer itself, no copy
        cache:append_block(k, v)
        K, V = cache:kv()
    elseif held > 0 then -- at most `window` rows copied, before the append overwrites the oldest
        K = core.concat({cache.k:ordered(), k}, 2)
        V = core.concat({cache.v:ordered(), v}, 2)
        cache:append_block(k, v)
    else
        cache:append_block(k, v)
    end
    return attn.wo:forward(core.attention(q, K, V, {heads = attn.heads, causal = attn.causal, window = attn.mask.window,
                                                    q_offset = held}))
end

function kvcache.block_chunk(block, x, cache, pos0)
    local h = x + kvcache.attention_chunk(block.attn, block.attn_norm:forward(x), cache, pos0)
    return h + block.ffn:forward(block.ffn_norm:forward(h))
end

-- One pre-norm transformer block at one position: the full forward's row pos.
function kvcache.block_step(block, x, cache, pos)
    local h = x + kvcache.attention_step(block.attn, block.attn_norm:forward(x), cache, pos)
    return h + block.ffn:forward(block.ffn_norm:forward(h))
end

-- One cache per block of a list, sized by each block's window.
function kvcache.for_blocks(blocks, dim)
    local out = {}
    for i, b in ipairs(blocks) do out[i] = kvcache.new(dim, b.attn.window or 0) end
    return out
end

function kvcache.release_all(list) for _, c in ipairs(list) do c:release() end end
function kvcache.ensure_all(list, n) for _, c in ipairs(list) do c:ensure(n) end end

return kvcache
