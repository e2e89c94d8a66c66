package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local T = require "tap"
local blt = require "blt"

-- A generated bad-input sweep. Every function of the blt module and every tensor
-- method has a row below that makes a valid call. For each argument position the
-- sweep substitutes bad values (nil, a string, a table, the wrong dtype, a 0-size
-- and a huge shape, a non-contiguous view, a released tensor, NaN, infinities, huge
-- and fractional numbers). Each call must either raise a Lua string error naming the
-- function, or return; a crash fails the whole file. Returned results are checked
-- where the sweep knows the answer: a non-contiguous view of the same values must
-- give the same result as the valid call ("correct"); other returns are counted as
-- "returned" (e.g. nil for an optional argument is a valid call).
-- BLT_TEST_LONG=1 adds pairs of positions substituted together and more values.

local LONG = os.getenv("BLT_TEST_LONG") == "1"
local ints = function(t) return blt.tensor(t, "int32") end

-- a small corpus for the data_* functions
local corpus_path = os.tmpname()
do
    local f = assert(io.open(corpus_path, "wb"))
    f:write(string.rep("sweep the corpus, ", 200))
    f:close()
end
local function corpus() return blt.data_open(corpus_path, 0.2) end
local function patcher() return blt.patch_new {scheme = "fixed", size = 2} end
local function leaf(t) return t:set_requires_grad() end
local function tokenizer() return blt.bpe_new(blt.tensor({{101, 101}, {101, 102}, {260, 261}}, "int32")) end

-- name -> function returning a fresh list of valid arguments (and n, their count)
local A = {
    tensor = function() return {{{1, 2}, {3, 4}}, "float32"} end,
    -- data-parallel collectives: run plainly, a world of one process (tests/test_mpi.lua runs them under mpirun)
    dist_info = function() return {} end, dist_rank = function() return {} end, dist_size = function() return {} end,
    dist_barrier = function() return {} end, dist_bcast = function() return {"hello"} end,
    dist_allreduce_sum = function() return {blt.randn({2, 3}, 1)} end,
    dist_allreduce_max = function() return {1.5} end,
    zeros = function() return {{2, 3}, "float32"} end,
    ones = function() return {{2, 3}} end,
    full = function() return {{2, 3}, 1.5, "float32"} end,
    randn = function() return {{2, 3}, 1} end,
    rand = function() return {{2, 3}, 1} end,
    Generator = function() return {7} end,
    reshape = function() return {blt.randn({2, 3}, 1), {3, 2}} end,
    transpose = function() return {blt.randn({2, 3}, 1), 1, 2} end,
    narrow = function() return {blt.randn({2, 3}, 1), 2, 1, 2} end,
    contiguous = function() return {blt.randn({2, 3}, 1)} end,
    concat = function() return {{blt.randn({2, 3}, 1), blt.randn({2, 3}, 2)}, 1} end,
    gather = function() return {blt.randn({2, 3}, 1), 2, ints {{0, 1}, {2, 2}}} end,
    index_select = function() return {blt.randn({2, 3}, 1), 2, ints {0, 2}} end,
    segment_maxpool = function() return {blt.randn({1, 5, 2}, 1), ints {{3, 2}}} end,
    add = function() return {blt.randn({2, 3}, 1), blt.randn({2, 3}, 2)} end,
    sub = function() return {blt.randn({2, 3}, 1), blt.randn({2, 3}, 2)} end,
    mul = function() return {blt.randn({2, 3}, 1), blt.randn({2, 3}, 2)} end,
    div = function() return {blt.randn({2, 3}, 1), blt.rand({2, 3}, 2) + 1} end,
    scale = function() return {blt.randn({2, 3}, 1), 2, 0.5} end,
    neg = function() return {blt.randn({2, 3}, 1)} end,
    exp = function() return {blt.randn({2, 3}, 1)} end,
    log = function() return {blt.rand({2, 3}, 1) + 0.5} end,
    tanh = function() return {blt.randn({2, 3}, 1)} end,
    silu = function() return {blt.randn({2, 3}, 1)} end,
    gelu = function() return {blt.randn({2, 3}, 1)} end,
    sigmoid = function() return {blt.randn({2, 3}, 1)} end,
    relu = function() return {blt.randn({2, 3}, 1)} end,
    sqrt = function() return {blt.rand({2, 3}, 1)} end,
    sum = function() return {blt.randn({2, 3}, 1), 2, true} end,
    mean = function() return {blt.randn({2, 3}, 1), 1, false} end,
    softmax = function() return {blt.randn({2, 3}, 1)} end,
    log_softmax = function() return {blt.randn({2, 3}, 1)} end,
    softmax_entropy = function() return {blt.randn({2, 3}, 1)} end,
    cross_entropy = function() return {blt.randn({2, 3}, 1), ints {0, 2}, {reduction = "sum", ignore_index = 1}} end,
    rmsnorm = function() return {blt.randn({2, 3}, 1), blt.ones {3}, 1e-5} end,
    embedding = function() return {blt.randn({4, 5}, 1), ints {1, 3}} end,
    embedding_sum = function() return {{blt.randn({4, 5}, 1), blt.randn({3, 5}, 2)}, {ints {1, 3}, ints {2, 0}}} end,
    attention_kernel = function() return {blt.attention_kernel()} end,
    rope = function() return {blt.randn({1, 2, 4}, 1), 2, {theta = 100, positions = ints {3, 5}}} end,
    matmul = function() return {blt.randn({2, 3}, 1), blt.randn({4, 3}, 2), false, true} end,
    bmm = function() return {blt.randn({2, 2, 3}, 1), blt.randn({2, 3, 2}, 2)} end,
    linear = function() return {blt.randn({2, 3}, 1), blt.randn({4, 3}, 2), blt.randn({4}, 3)} end,
    attention = function()
        return {blt.randn({1, 3, 4}, 1), blt.randn({1, 3, 4}, 2), blt.randn({1, 3, 4}, 3),
                {heads = 2, causal = true, window = 2, scale = 0.5}}
    end,
    no_grad = function() return {function(x) return x end, 3} end,
    grad_enabled = function() return {} end,
    backward = function() return {blt.sum(blt.mul(leaf(blt.randn({2, 3}, 1)), 2))} end,
    mem_stats = function() return {} end,
    mem_reset_peak = function() return {} end,
    mem_trim = function() return {} end,
    is_tensor = function() return {blt.zeros {1}} end,
    scope = function() return {function(a) return blt.zeros {2}, a end, 2} end,
    scope_depth = function() return {} end,
    hash_file = function() return {corpus_path} end,
    h5_crc32 = function() return {"some bytes", 7} end,
    hash_tensor = function() return {blt.randn({2, 3}, 1)} end,
    interrupted = function() return {} end,
    set_threads = function() return {blt.threads()} end,
    threads = function() return {} end,
    blas_info = function() return {} end,
    set_precision = function() return {"fp32"} end,
    precision = function() return {} end,
    now = function() return {} end,
    isatty = function() return {2} end,
    which = function() return {"sh"} end, getuid = function() return {} end,
    rss = function() return {} end,
    mac_counter = function() return {} end,
    mac_counter_reset = function() return {} end,
    token_ids = function() return {} end,
    bench_sgemm = function() return {blt.randn({2, 3}, 1), blt.randn({3, 2}, 2), blt.zeros {2, 2}, false, false, 1} end,
    bench_gemm = function() return {false, false, 2, 2, 3, "f32", 1} end,
    gemm = function() return {false, false, 2, 2, 3, 1, blt.randn({2, 3}, 1), 3, blt.randn({3, 2}, 2), 2, 0, blt.zeros {2, 2}, 2} end,
    bf16_bits = function() return {{0x3f800000, 0x40490fdb}} end,
    gemv_bf16 = function() return {blt.randn({3, 4}, 1), blt.randn({4}, 2)} end,
    bf16_roundings = function() return {} end,
    blas_stats = function() return {} end,
    blas_stats_reset = function() return {} end,
    data_open = function() return {corpus_path, 0.2} end,
    data_close = function() return {corpus()} end,
    data_is_open = function() return {corpus()} end,
    data_info = function() return {corpus()} end,
    data_document = function() return {corpus(), 1} end,
    data_ids = function() return {corpus(), 1, 10} end,
    data_sample = function() return {corpus(), blt.Generator(1), 2, 8} end,
    data_val_count = function() return {corpus(), 8} end,
    data_val_windows = function() return {corpus(), 1, 2, 8} end,
    patch_new = function() return {{scheme = "entropy", threshold = 1.5, max_patch_len = 4}} end,
    patch_info = function() return {patcher()} end,
    patch_flags = function() return {patcher(), "hello"} end,
    patch_lengths = function() return {patcher(), {1, 5, 6, 7}} end,
    patch_ids = function() return {patcher(), ints {1, 5, 6, 7}} end,
    patch_count = function() return {patcher(), "hello"} end,
    patch_batch = function() return {patcher(), ints {{1, 5, 6, 7}, {1, 8, 9, 10}}} end,
    patch_decoder_ids = function() return {{1, 2, 1}, 5} end,
    patch_text_ids = function() return {"hi"} end,
    hash_buckets = function() return {{1, 5, 6, 7}, {1, 2}, 16} end,
    bpe_train = function() return {"aaabdaaabac", 3, 2} end,
    bpe_new = function() return {ints {{101, 101}, {101, 102}, {260, 261}}} end,
    bpe_encode = function() return {tokenizer(), "aaabdaaabac"} end,
    bpe_encode_rows = function() return {tokenizer(), ints {{1, 101, 101, 102}, {1, 101, 0, 0}}} end,
    bpe_decode = function() return {tokenizer(), ints {1, 262, 104, 2}} end,
    bpe_merges = function() return {tokenizer()} end,
    bpe_info = function() return {tokenizer()} end,
    bpe_close = function() return {tokenizer()} end,
    nn_count_ne = function() return {ints {0, 1, 0}, 0} end,
    nn_trunc_normal = function() return {blt.Generator(1), {2, 3}, 0.02} end,
    nn_flatten = function() return {{blt.randn({2, 2}, 1), blt.randn({3}, 2)}} end,
    nn_adamw_step = function()
        return {blt.randn({4}, 1), blt.randn({4}, 2), blt.zeros {4}, blt.zeros {4}, {{off = 0, len = 4, decay = true}},
                1, 0.1, 0.9, 0.95, 1e-8, 0.1}
    end,
    nn_sgd_step = function()
        return {blt.randn({4}, 1), blt.randn({4}, 2), blt.zeros {4}, {{off = 0, len = 4, decay = false}}, 1, 0.1, 0.9, 0}
    end,
    nn_l2norm = function() return {blt.randn({4}, 1)} end,
    nn_scale_ = function() return {blt.randn({4}, 1), 0.5} end,
    nn_zero_ = function() return {blt.randn({4}, 1)} end,
}

-- more valid calls of the same functions, for their other arguments and options
local VARIANTS = {
    {"attention", function()
        return {blt.randn({2, 3, 4}, 1), blt.randn({2, 5, 4}, 2), blt.randn({2, 5, 4}, 3),
                {heads = 1, q_seg = ints {{0, 0, 1}, {0, 1, 1}}, k_seg = ints {{0, 0, 1, 1, 1}, {0, 0, 0, 1, 1}},
                 k_start = ints {{0, 0, 1}, {0, 1, 2}}, k_end = ints {{2, 3, 5}, {1, 4, 5}}}}
    end},
    {"patch_new", function() return {{scheme = "entropy_delta", delta = 0.5, threshold = 2}} end},
    {"patch_new", function() return {{scheme = "fixed", size = 3, max_patch_len = 2}} end},
    {"patch_flags", function()
        return {blt.patch_new {scheme = "entropy", threshold = 1}, ints {1, 5, 6, 7}, blt.tensor {0.5, 2, 0.1, 3}}
    end},
    {"patch_flags", function() return {blt.patch_new {scheme = "given"}, {1, 5, 6}, nil, {1, 0, 1, 1}} end},
    {"patch_batch", function()
        return {blt.patch_new {scheme = "entropy", threshold = 1}, ints {{1, 5, 6, 7}}, blt.tensor {{0.5, 2, 0.1, 3}}}
    end},
    {"patch_batch", function() return {blt.patch_new {scheme = "given"}, ints {{1, 5, 6}}, nil, ints {{1, 0, 1, 1}}} end},
    {"hash_buckets", function() return {ints {{1, 5, 6, 7}, {1, 9, 9, 9}}, {3}, 100} end},
    {"patch_decoder_ids", function() return {ints {1, 2, 1}, 5} end},
    {"cross_entropy", function() return {blt.randn({2, 2, 3}, 1), ints {{0, 2}, {1, 1}}} end},
    {"matmul", function() return {blt.randn({2, 2, 3}, 1), blt.randn({3, 2}, 2)} end},
    {"segment_maxpool", function() return {blt.randn({5, 2}, 1), ints {3, 2}} end},
    {"gather", function() return {blt.randn({3, 2, 2}, 1), 1, ints {{{0, 2}, {1, 1}}}} end},
    {"full", function() return {{2}, 7, "int32"} end},
    {"bpe_train", function() return {ints {1, 101, 101, 2, 101, 101}, 1} end},
    {"bpe_new", function() return {blt.tensor {{101, 101}, {260, 101}}} end},
    {"bpe_encode", function() return {tokenizer(), ints {1, 101, 101, 0, 2}} end},
    {"bpe_decode", function() return {tokenizer(), {262, 3}} end},
    {"tensor", function() return {{{1, 2}, {3, 4}}, "int32"} end},
}

-- not swept, and why
local SKIP = {
    version = "a string", core = "the C module table (its functions are the ones swept)",
    groups = "a table: each core function's binding group (tests/test_kindfile.lua checks it)",
    catch_signals = "installs process signal handlers (prove's SIGINT must keep working)",
    h5_create = "HDF5 binding (core/lua_h5.c) is outside this sweep's scope; it writes files at the given path",
    h5_open = "HDF5 binding (core/lua_h5.c) is outside this sweep's scope",
    h5_metrics = "HDF5 binding (core/lua_h5.c) is outside this sweep's scope; it writes files at the given path",
    mkdir = "creates folders at the given path (tests/test_runs.lua covers it)",
    listdir = "reads folders at the given path (tests/test_runs.lua covers it)",
    lock = "creates and locks a file at the given path (tests/test_runs.lua covers it)",
    spawn = "runs the program it is given (tests/test_hostile.lua covers its arguments)",
    mkdtemp = "creates a folder (tests/test_hostile.lua uses it)",
    rm_rf = "removes what is at the given path (tests/test_hostile.lua uses it)",
    lkind = "looks at the given path (tests/test_runfiles.lua covers it)",
    write_file = "writes a file at the given path (tests/test_runfiles.lua covers it)",
    file_kind = "looks at the given path (tests/test_edges.lua covers it)",
    dist_abort = "ends the whole MPI job (a plain process: prints its message; tests/test_mpi.lua covers the job's end)",
    dist_finalize = "ends MPI in this process for good (tests/test_mpi.lua ends every run with it)",
    lua_heap_limit = "caps the Lua heap of this process (a --config file's sandbox; tests/test_bounds.lua covers it)",
}

-- tensor methods: self first, then the arguments
local x23 = function() return blt.randn({2, 3}, 1) end
local M = {
    shape = function() return {x23()} end, size = function() return {x23(), 2} end, dim = function() return {x23()} end,
    numel = function() return {x23()} end, dtype = function() return {x23()} end,
    is_contiguous = function() return {x23()} end, totable = function() return {x23()} end,
    item = function() return {blt.randn({1}, 1)} end, get = function() return {x23(), 2, 3} end,
    set = function() return {x23(), 4.5, 1, 2} end, fill = function() return {x23(), 2.5} end,
    copy = function() return {x23(), blt.randn({2, 3}, 2)} end, clone = function() return {x23()} end,
    detach = function() return {x23()} end, float = function() return {ints {1, 2}} end,
    int = function() return {x23()} end, release = function() return {x23()} end,
    backward = A.backward, zero_grad = function() return {leaf(x23())} end,
    set_requires_grad = function() return {x23(), true} end,
    reshape = A.reshape, view = A.reshape, transpose = A.transpose, t = function() return {x23()} end,
    narrow = A.narrow, contiguous = A.contiguous, gather = A.gather, index_select = A.index_select,
    add = A.add, sub = A.sub, mul = A.mul, div = A.div, scale = A.scale, neg = A.neg, exp = A.exp, log = A.log,
    tanh = A.tanh, silu = A.silu, gelu = A.gelu, sigmoid = A.sigmoid, relu = A.relu, sqrt = A.sqrt, sum = A.sum,
    mean = A.mean, softmax = A.softmax, log_softmax = A.log_softmax, matmul = A.matmul,
}

-- ---- the values substituted ----

-- a non-contiguous tensor with the same shape and values as t (a transposed copy,
-- transposed back); nil for fewer than 2 dimensions (no op makes a strided 1-d view)
local function strided_like(t)
    local shape = t:shape()
    if #shape < 2 then return nil end
    local tshape = {}
    for i = 1, #shape do tshape[i] = shape[i] end
    tshape[#shape], tshape[#shape - 1] = tshape[#shape - 1], tshape[#shape]
    local b = blt.zeros(tshape, t:dtype())
    b:copy(t:transpose(-2, -1))
    local v = b:transpose(-2, -1)
    return (not v:is_contiguous()) and v or nil
end

local function wrong_dtype(t)
    return t:dtype() == "float32" and blt.zeros(t:shape(), "int32") or blt.zeros(t:shape(), "float32")
end

local function released(t)
    local c = t:clone()
    c:release()
    return c
end

-- each returns a replacement for the valid value v (NA: does not apply to v), and a label
local NA = {}
local SUBS = {
    {"nil", function() return nil end},
    {"a string", function() return "x" end},
    {"an empty table", function() return {} end},
    {"a table of junk", function() return {"a", {}, true} end},
    {"a boolean", function() return true end},
    {"a function", function() return function() end end},
    {"wrong dtype", function(v) return blt.is_tensor(v) and wrong_dtype(v) or blt.zeros({2}, "int32") end},
    {"a 0-size tensor", function(v) return blt.zeros({0}, blt.is_tensor(v) and v:dtype() or "float32") end},
    {"a 0-size 2-d tensor", function(v) return blt.zeros({0, 3}, blt.is_tensor(v) and v:dtype() or "float32") end},
    {"a 0-size shape", function() return {0, 2} end},
    {"a huge shape", function() return {2 ^ 41} end},
    {"a huge 2-d shape", function() return {2 ^ 21, 2 ^ 21} end},
    {"a non-contiguous view", function(v) return blt.is_tensor(v) and strided_like(v) or NA end, view = true},
    {"a released tensor", function(v) return blt.is_tensor(v) and released(v) or released(blt.zeros {2}) end},
    {"same shape, int32 ids of 2^31 - 1", function(v)
        return blt.is_tensor(v) and v:dtype() == "int32" and blt.full(v:shape(), 2 ^ 31 - 1, "int32") or NA end},
    {"same shape, int32 ids of -1", function(v)
        return blt.is_tensor(v) and v:dtype() == "int32" and blt.full(v:shape(), -1, "int32") or NA end},
    {"same shape, all NaN", function(v)
        return blt.is_tensor(v) and v:dtype() == "float32" and blt.full(v:shape(), 0 / 0) or NA end},
    {"same shape, all -inf", function(v)
        return blt.is_tensor(v) and v:dtype() == "float32" and blt.full(v:shape(), -math.huge) or NA end},
    {"other shape [3,2]", function(v) return blt.is_tensor(v) and blt.ones({3, 2}, v:dtype()) or NA end},
    {"other shape [2,3,4]", function(v) return blt.is_tensor(v) and blt.ones({2, 3, 4}, v:dtype()) or NA end},
    {"a 0-d tensor", function(v) return blt.is_tensor(v) and blt.tensor(1, v:dtype()) or NA end},
    {"NaN", function() return 0 / 0 end},
    {"inf", function() return math.huge end},
    {"-inf", function() return -math.huge end},
    {"-1", function() return -1 end},
    {"0", function() return 0 end},
    {"1.5", function() return 1.5 end},
    {"2^41", function() return 2 ^ 41 end},
    {"maxinteger", function() return math.maxinteger end},
    {"mininteger", function() return math.mininteger end},
}
local LONG_SUBS = {
    {"a huge number", function() return 1e300 end},
    -- sizes this big would be valid allocations of many GB (the core allows 2^40
    -- elements), so the large values here are negative: 1 - 2^32 truncates to 1
    {"1 - 2^32", function() return 1 - 2 ^ 32 end},
    {"-2^31 - 1", function() return -2 ^ 31 - 1 end},
    {"a string with NUL", function() return "a\0b" end},
    {"a big float tensor", function() return blt.randn({3, 4, 5}, 9) end},
    {"a table of NaN", function() return {0 / 0, 0 / 0} end},
    {"a table with a huge entry", function() return {2 ^ 60} end},
    {"a table of huge entries", function() return {2 ^ 20, 2 ^ 20, 2 ^ 20} end},
    {"a tensor of NaN", function() return blt.full({2, 3}, 0 / 0) end},
    {"a tensor of -inf", function() return blt.full({2, 3}, -math.huge) end},
    {"a generator", function() return blt.Generator(1) end},
}
if LONG then for _, s in ipairs(LONG_SUBS) do SUBS[#SUBS + 1] = s end end

-- ---- running and classifying ----

local counts = {cases = 0, errors = 0, correct = 0, returned = 0}
local unclear = {}

local function flat_values(v)
    if not blt.is_tensor(v) then return nil end
    local ok, t = pcall(function() return v:totable() end)
    if not ok then return nil end
    if type(t) ~= "table" then return {t} end
    return T.flatten(t)
end

local function same_values(a, b)
    local fa, fb = flat_values(a), flat_values(b)
    if not fa or not fb or #fa ~= #fb then return false end
    for i = 1, #fa do
        local x, y = fa[i], fb[i]
        if x ~= y and not (x ~= x and y ~= y) and math.abs(x - y) > 1e-5 * (1 + math.abs(y)) then return false end
    end
    return true
end

local function names_fn(err, name)
    name = name:gsub("^Tensor:", ""):gsub("^Generator:", "")
    local short = name:gsub("^nn_", ""):gsub("^data_", "data."):gsub("_$", "")
    local alias = {nn_adamw_step = "optim", nn_sgd_step = "optim", nn_l2norm = "optim", nn_scale_ = "optim",
                   nn_zero_ = "optim", bmm = "matmul", set_requires_grad = "requires_grad", view = "reshape", t = "transpose", release = "release"}
    return err:find(name, 1, true) or err:find(short, 1, true) or (alias[name] and err:find(alias[name], 1, true))
end

local function call(f, args, n) return pcall(f, table.unpack(args, 1, n)) end

-- the valid call's first result, for comparison
local function valid_result(f, make)
    local args = make()
    local ok, r = call(f, args, #args)
    return ok, r
end

local function run_case(label, name, f, make, subs)
    local args = make()
    local nvalid = #args
    local n = math.max(#args, 1)
    local view = true -- only views substituted: the valid call's result is the answer
    for pos, sub in pairs(subs) do
        local v = args[pos]
        if sub.field then -- one field of an option table
            local copy = {}
            for k, x in pairs(v) do copy[k] = x end
            copy[sub.field] = sub.sub[2](v[sub.field])
            if copy[sub.field] == NA then return end
            args[pos] = copy
            view = view and sub.sub.view
        else
            args[pos] = sub[2](v)
            if args[pos] == NA then return end
            view = view and sub.view
        end
        if pos > n then n = pos end
    end
    counts.cases = counts.cases + 1
    local ok, r = blt.scope(call, f, args, n) -- scope: no tensor of the sweep outlives its case
    if not ok then
        if type(r) == "string" and names_fn(r, name) then counts.errors = counts.errors + 1
        else unclear[#unclear + 1] = ("%s (%s): %s"):format(label, name, tostring(r)) end
        return
    end
    -- a view with the same values must give the valid call's result
    if view and blt.is_tensor(r) then
        local vok, want = blt.scope(valid_result, f, make)
        if vok and same_values(r, want) then counts.correct = counts.correct + 1; return end
        if vok and blt.is_tensor(want) then
            unclear[#unclear + 1] = ("%s (%s): a non-contiguous view gave a different result"):format(label, name)
            return
        end
    end
    if blt.is_tensor(r) then tostring(r) end -- the result must be usable
    -- an extra argument past the valid ones: when the call returns, it must be the
    -- valid call's result (counted as correct when it is; optional flags may differ)
    local extra = true
    for pos in pairs(subs) do extra = extra and pos > nvalid end
    if extra then
        local vok, want = blt.scope(valid_result, f, make)
        if vok and ((blt.is_tensor(r) and same_values(r, want)) or
                    (not blt.is_tensor(r) and type(r) ~= "table" and type(r) ~= "userdata" and (r == want or (r ~= r and want ~= want)))) then
            counts.correct = counts.correct + 1
            return
        end
    end
    counts.returned = counts.returned + 1
end

local function sweep(name, f, make, is_method)
    local nargs = #make()
    local positions = nargs + 1 -- one past the end too
    for pos = 1, positions do
        for _, sub in ipairs(SUBS) do
            run_case(("%s arg %d = %s"):format(name, pos, sub[1]), name, f, make, {[pos] = sub})
        end
    end
    -- each field of an option table (string keys)
    local valid = make()
    for pos = 1, nargs do
        local v = valid[pos]
        if type(v) == "table" and #v == 0 and next(v) ~= nil then
            local keys = {}
            for k in pairs(v) do keys[#keys + 1] = k end
            table.sort(keys)
            for _, k in ipairs(keys) do
                for _, sub in ipairs(SUBS) do
                    run_case(("%s arg %d field %s = %s"):format(name, pos, k, sub[1]), name, f, make,
                        {[pos] = {field = k, sub = sub}})
                end
            end
        end
    end
    if LONG then -- random combinations of up to three positions (a fixed seed: reproducible)
        local g = blt.Generator(#name * 7919 + positions)
        for _ = 1, 150 do
            local subs, label = {}, {}
            for _ = 1, g:integer(3) do
                local pos, sub = g:integer(positions), SUBS[g:integer(#SUBS)]
                subs[pos] = sub
                label[#label + 1] = ("%d = %s"):format(pos, sub[1])
            end
            run_case(("%s args %s"):format(name, table.concat(label, ", ")), name, f, make, subs)
        end
    end
    if LONG then -- pairs of positions
        for p1 = 1, nargs do
            for p2 = p1 + 1, nargs do
                for i = 1, #SUBS, 3 do
                    local s1, s2 = SUBS[i], SUBS[(i * 7) % #SUBS + 1]
                    run_case(("%s args %d, %d = %s, %s"):format(name, p1, p2, s1[1], s2[1]), name, f, make, {[p1] = s1, [p2] = s2})
                end
            end
        end
    end
end

local t0 = blt.now()
local missing = {}
local names = {}
for k in pairs(blt) do names[#names + 1] = k end
table.sort(names)
local nfun = 0
for _, k in ipairs(names) do
    local v = blt[k]
    if SKIP[k] then
        -- listed with its reason
    elseif type(v) ~= "function" then
        missing[#missing + 1] = k .. " (not a function, no reason to skip given)"
    elseif not A[k] then
        missing[#missing + 1] = k
    else
        nfun = nfun + 1
        sweep(k, v, A[k])
    end
end
-- Every method of a metatable's method table against its row in rows (a missing row is
-- listed); each is called as a field, like x.k(...) (a wrapper Lua can name in
-- messages; not a tail call).
local function sweep_methods(class, methods, rows)
    local names = {}
    for k in pairs(methods) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do
        if not rows[k] then missing[#missing + 1] = class .. ":" .. k
        else
            nfun = nfun + 1
            local f = load(("local m = ...; return function(...) local r = table.pack(m.%s(...)); "
                .. "return table.unpack(r, 1, r.n) end"):format(k))(methods)
            sweep(class .. ":" .. k, f, rows[k])
        end
    end
end
sweep_methods("Tensor", getmetatable(blt.zeros {1}).methods, M)
for _, v in ipairs(VARIANTS) do
    nfun = nfun + 1
    sweep(v[1], blt[v[1]], v[2])
end
-- Generator methods
local G = {
    randn = function() return {blt.Generator(1), {2, 3}} end, rand = function() return {blt.Generator(1), {2, 3}} end,
    uniform = function() return {blt.Generator(1)} end, integer = function() return {blt.Generator(1), 6} end,
    state = function() return {blt.Generator(1)} end, clone = function() return {blt.Generator(1)} end,
    set_state = function() local g = blt.Generator(1); return {blt.Generator(2), g:state()} end,
}
sweep_methods("Generator", getmetatable(blt.Generator(1)).__index, G)
-- the valid calls themselves must still work
for k, make in pairs(A) do
    if blt[k] then
        local args = make()
        local ok, err = blt.scope(call, blt[k], args, #args)
        if not ok then unclear[#unclear + 1] = ("valid call of %s failed: %s"):format(k, tostring(err)) end
    end
end
for i, v in ipairs(VARIANTS) do
    local args = v[2]()
    local ok, err = blt.scope(call, blt[v[1]], args, #args)
    if not ok then unclear[#unclear + 1] = ("valid call of %s (variant %d) failed: %s"):format(v[1], i, tostring(err)) end
end
blt.set_threads(blt.threads())
os.remove(corpus_path)

T.ok(#missing == 0, "every function of blt and every tensor method has a row in the sweep", "missing: " .. table.concat(missing, ", "))
T.ok(#unclear == 0, "every bad call raised a clear error naming its function or returned a correct result",
    ("%d unclear:\n%s"):format(#unclear, table.concat(unclear, "\n", 1, math.min(#unclear, tonumber(os.getenv("SWEEP_SHOW") or 40)))))
io.write(("# sweep (%s): %d valid calls (functions, methods, variants), %d cases: %d clean errors, %d correct results (checked: views, extra arguments), "
    .. "%d other returns, %d unclear, 0 crashes; %.1f s\n"):format(LONG and "long" or "short", nfun, counts.cases,
    counts.errors, counts.correct, counts.returned, #unclear, blt.now() - t0))
T.done()
