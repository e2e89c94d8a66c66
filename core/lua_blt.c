/* The C module "blt.core": tensors, ops and runtime settings. lua/blt/init.lua
 * builds the researcher-facing "blt" module on top of it. */
#include "lua_blt.h"
#include "lua_bind.h"
#include "blas.h"
#include "dist.h"
#include "ids.h"
#include "ops.h"
#include "thread.h"
#include <lauxlib.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int l_set_threads(lua_State *L)
{
    int64_t n = bltL_int(L, 1, "set_threads", "thread count", 1, 256);
    blt_threads_init((int)n);
    return 0;
}

static int l_threads(lua_State *L)
{
    lua_pushinteger(L, blt_threads_count());
    return 1;
}

/* set_precision("fp32" | "bf16"): the products of linear (ops.h, blt_set_precision);
 * "bf16" raises an error where bf16 products would be slower than fp32 */
static int l_set_precision(lua_State *L)
{
    const char *p = bltL_name(L, 1, "set_precision", "precision");
    int bf16 = !strcmp(p, "bf16");
    if (!bf16 && strcmp(p, "fp32")) return luaL_error(L, "blt.set_precision: precision '%s' (want fp32 or bf16)", p);
    if (blt_set_precision(bf16) != BLT_OK) return bltL_error(L, "set_precision");
    return 0;
}

static int l_precision(lua_State *L)
{
    lua_pushstring(L, blt_precision() ? "bf16" : "fp32");
    return 1;
}

static int l_blas_info(lua_State *L)
{
    lua_pushstring(L, blt_blas_info());
    return 1;
}

/* Wall-clock seconds (monotonic), for rates and ETAs; os.clock is CPU time. */
static int l_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec);
    return 1;
}

static int l_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)bltL_optint(L, 1, "isatty", "file descriptor", 0, INT32_MAX, 2)));
    return 1;
}

/* Resident memory now and at its peak, in bytes (from /proc/self/status). */
static int l_rss(lua_State *L)
{
    FILE *f = fopen("/proc/self/status", "r");
    long now = -1, peak = -1;
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        if (!strncmp(line, "VmRSS:", 6)) now = atol(line + 6);
        if (!strncmp(line, "VmHWM:", 6)) peak = atol(line + 6);
    }
    if (f) fclose(f);
    lua_pushinteger(L, (lua_Integer)now * 1024);
    lua_pushinteger(L, (lua_Integer)peak * 1024);
    return 2;
}

/* lua_heap_limit(bytes | nil): from now on the Lua heap may grow by at most `bytes`
 * (nil: no limit), for running an untrusted chunk (a --config file). An allocation
 * past it fails, which Lua raises as "not enough memory" in the chunk. A count hook
 * cannot do this: one concatenation (s .. s .. s) allocates inside one instruction. */
static lua_Alloc base_alloc;
static void *base_ud;
static int64_t heap_growth, heap_cap = -1;

static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    size_t old = ptr ? osize : 0; /* without ptr, osize is a type tag */
    /* only growth may fail: Lua assumes a shrink never does */
    if (heap_cap >= 0 && nsize > old && heap_growth + (int64_t)(nsize - old) > heap_cap) return NULL;
    void *p = base_alloc(base_ud, ptr, osize, nsize);
    if (p || nsize == 0) heap_growth += (int64_t)nsize - (int64_t)old;
    return p;
}

static int l_lua_heap_limit(lua_State *L)
{
    int64_t cap = lua_isnoneornil(L, 1) ? -1 : bltL_int(L, 1, "lua_heap_limit", "bytes", 0, INT64_MAX);
    if (!base_alloc) {
        base_alloc = lua_getallocf(L, &base_ud);
        lua_setallocf(L, capped_alloc, NULL);
    }
    heap_growth = 0;
    heap_cap = cap;
    return 0;
}

/* FNV-1a 64 over bytes: content identity for caches (not cryptographic). */
static uint64_t fnv1a(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

static void push_hex(lua_State *L, uint64_t h)
{
    char buf[20];
    snprintf(buf, sizeof buf, "%016llx", (unsigned long long)h);
    lua_pushstring(L, buf);
}

/* hash_file(path) -> 16 hex digits, or nil and a message */
static int l_hash_file(lua_State *L)
{
    const char *path = bltL_name(L, 1, "hash_file", "path");
    /* O_NONBLOCK: opening a FIFO would wait for a writer; fstat then refuses it */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
        close(fd);
        lua_pushnil(L);
        lua_pushfstring(L, "%s: not a regular file", path);
        return 2;
    }
    FILE *f = fd >= 0 ? fdopen(fd, "rb") : NULL;
    if (!f) {
        if (fd >= 0) close(fd);
        lua_pushnil(L);
        lua_pushfstring(L, "cannot open %s", path);
        return 2;
    }
    unsigned char buf[65536];
    uint64_t h = 0xcbf29ce484222325ULL;
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) h = fnv1a(h, buf, n);
    fclose(f);
    push_hex(L, h);
    return 1;
}

/* file_kind(path) -> "file", "folder", "fifo", "socket", "character device",
 * "block device" or "other" (symbolic links followed), or nil and "path: reason".
 * stat() never blocks, so readers ask this before opening a path a user gave. */
static int l_file_kind(lua_State *L)
{
    const char *path = bltL_name(L, 1, "file_kind", "path");
    struct stat st;
    if (stat(path, &st) != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", path, strerror(errno));
        return 2;
    }
    lua_pushstring(L, S_ISREG(st.st_mode)    ? "file"
                      : S_ISDIR(st.st_mode)  ? "folder"
                      : S_ISFIFO(st.st_mode) ? "fifo"
                      : S_ISSOCK(st.st_mode) ? "socket"
                      : S_ISCHR(st.st_mode)  ? "character device"
                      : S_ISBLK(st.st_mode)  ? "block device"
                                             : "other");
    return 1;
}

/* hash_tensor(t) -> 16 hex digits over its elements in order */
static int l_hash_tensor(lua_State *L)
{
    blt_tensor *t = bltL_check(L, 1), *c;
    if (blt_contiguous(&c, t)) return bltL_error(L, "hash_tensor");
    push_hex(L, fnv1a(0xcbf29ce484222325ULL, (const unsigned char *)c->st->data + c->offset * 4, (size_t)c->numel * 4));
    blt_tensor_release(c);
    return 1;
}

/* mac_counter() -> {matmul =, attention =, attention_useful =}: multiply-adds executed
 * since the last mac_counter_reset() (blas.h), for checking lua/blt/flops.lua. */
static int l_mac_counter(lua_State *L)
{
    int64_t m[BLT_MACS_KINDS];
    blt_macs_read(m);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, (lua_Integer)m[BLT_MACS_MATMUL]);
    lua_setfield(L, -2, "matmul");
    lua_pushinteger(L, (lua_Integer)m[BLT_MACS_ATTENTION]);
    lua_setfield(L, -2, "attention");
    lua_pushinteger(L, (lua_Integer)m[BLT_MACS_ATTENTION_USEFUL]);
    lua_setfield(L, -2, "attention_useful");
    return 1;
}

static int l_mac_counter_reset(lua_State *L)
{
    blt_macs_reset();
    return 0;
}

/* token_ids() -> {PAD=, BOS=, EOS=, RESERVED=, OFFSET=, VOCAB=}: core/ids.h's values, so
 * lua/blt/ids.lua can check that its table agrees with C's. */
static int l_token_ids(lua_State *L)
{
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, BLT_ID_PAD); lua_setfield(L, -2, "PAD");
    lua_pushinteger(L, BLT_ID_BOS); lua_setfield(L, -2, "BOS");
    lua_pushinteger(L, BLT_ID_EOS); lua_setfield(L, -2, "EOS");
    lua_pushinteger(L, BLT_ID_RESERVED); lua_setfield(L, -2, "RESERVED");
    lua_pushinteger(L, BLT_ID_OFFSET); lua_setfield(L, -2, "OFFSET");
    lua_pushinteger(L, BLT_ID_VOCAB); lua_setfield(L, -2, "VOCAB");
    return 1;
}

static const luaL_Reg runtime[] = {
    {"mac_counter", l_mac_counter}, {"mac_counter_reset", l_mac_counter_reset},
    {"hash_file", l_hash_file}, {"file_kind", l_file_kind}, {"hash_tensor", l_hash_tensor},
    {"set_threads", l_set_threads}, {"threads", l_threads}, {"blas_info", l_blas_info},
    {"set_precision", l_set_precision}, {"precision", l_precision}, {"now", l_now},
    {"isatty", l_isatty}, {"rss", l_rss}, {"lua_heap_limit", l_lua_heap_limit}, {"token_ids", l_token_ids}, {NULL, NULL}};

/* The default thread count: BLT_THREADS, else this machine's cores shared among the
 * job's processes on it, so that ranks on one machine never oversubscribe it. */
static int default_threads(void)
{
    const char *env = getenv("BLT_THREADS");
    if (env && atoi(env) > 0) return atoi(env);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    long n = (cores > 0 ? cores : 1) / blt_dist_local_size();
    /* mpirun binds each process to a core by default (up to 2 processes): more threads
     * than the cores it may run on would only take turns on them */
    cpu_set_t set;
    if (blt_dist_active() && sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) < n) n = CPU_COUNT(&set);
    return n > 0 ? (int)n : 1;
}

/* core.groups[name] = the opener ("tensor", "proc", ...) that added module field name:
 * what a model kind from a file may use is chosen by group (lua/blt/kindfile.lua), so a
 * function added to a binding file is classified by where it is added. Stack: module,
 * groups; names already tagged keep their group (no opener reuses another's name). */
static void tag_group(lua_State *L, const char *group)
{
    int groups = lua_gettop(L), module = groups - 1;
    lua_pushnil(L);
    while (lua_next(L, module)) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_rawget(L, groups);
        int known = !lua_isnil(L, -1);
        lua_pop(L, 1);
        if (!known) {
            lua_pushvalue(L, -1);
            lua_pushstring(L, group);
            lua_rawset(L, groups);
        }
    }
}

int luaopen_blt_core(lua_State *L)
{
    static int started;
    if (!started) {
        if (blt_blas_init() != BLT_OK) return bltL_error(L, "blas_init");
        /* the rank first: the thread pool's size depends on the processes per machine */
        if (blt_dist_init() != BLT_OK) return bltL_error(L, "dist_init");
        blt_threads_init(default_threads());
        started = 1;
    }
    luaL_newlib(L, runtime);
    lua_newtable(L); /* groups: name -> the opener that added it */
    tag_group(L, "runtime");
    static const struct { void (*open)(lua_State *); const char *group; } openers[] = {
        {bltL_open_tensor, "tensor"}, {bltL_open_generator, "generator"}, {bltL_open_patch, "patch"},
        {bltL_open_data, "data"}, {bltL_open_h5, "h5"}, {bltL_open_nn, "nn"}, {bltL_open_scope, "scope"},
        {bltL_open_bench, "bench"}, {bltL_open_blas, "blas"}, {bltL_open_run, "run"}, {bltL_open_bpe, "bpe"},
        {bltL_open_dist, "dist"}, {bltL_open_proc, "proc"}};
    for (size_t i = 0; i < sizeof openers / sizeof openers[0]; i++) {
        lua_pushvalue(L, -2); /* the module on top, as the openers expect */
        openers[i].open(L);
        lua_pop(L, 1);
        tag_group(L, openers[i].group);
    }
    lua_setfield(L, -2, "groups");
    return 1;
}
