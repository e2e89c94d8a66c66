/* Child processes and file-system chores without a shell: every string is passed to
 * the system as one argument, so no quoting can go wrong and no character in a run
 * name, a title or a config value can start a command.
 *
 *   core.spawn(argv, opts)   runs argv[1] (searched in PATH when it has no '/') with
 *                            the arguments argv[2..]; waits for it. Returns
 *                            true|nil, "exit"|"signal", number (Lua's convention);
 *                            or nil, "error", message when it could not start.
 *                            opts (all optional): stdin, stdout, stderr = file paths
 *                            (stdout/stderr are truncated; stderr == stdout: one file),
 *                            env = {NAME = value} added to the environment,
 *                            cwd = folder the child starts in.
 *   core.which(name)         the path of an executable `name` in PATH, or nil
 *   core.mkdtemp()           a new private folder (mode 0700) under $TMPDIR or /tmp
 *   core.rm_rf(path)         removes path and, for a folder, everything in it (links
 *                            are removed, never followed); true, or nil and a message
 *   core.getuid()            the real user id (0: root)
 *
 * A string with a NUL byte is refused with an error naming the function and the
 * argument: C would cut it there and act on another name. */
#include "lua_bind.h"
#include <lauxlib.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* The string at idx (absolute) with no NUL byte, for fn's argument `what`. */
static const char *plain(lua_State *L, int idx, const char *fn, const char *what)
{
    if (lua_type(L, idx) == LUA_TNUMBER) lua_tolstring(L, idx, NULL); /* a number counts as its string */
    return bltL_name(L, idx, fn, what);
}

/* opts[key] as a string without NUL, or NULL when absent. Leaves it on the stack
 * (the pointer stays valid while it is there). */
static const char *opt_string(lua_State *L, int opts, const char *key)
{
    if (lua_getfield(L, opts, key) == LUA_TNIL) return NULL;
    char what[32];
    snprintf(what, sizeof what, "opts.%s", key);
    return plain(L, lua_gettop(L), "spawn", what);
}

/* Everything spawn allocates, freed on every path (a Lua error included: __gc). */
typedef struct {
    char **argv, **envp;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int fa_ok, attr_ok;
} spawn_res;

static int spawn_res_gc(lua_State *L)
{
    spawn_res *r = lua_touserdata(L, 1);
    free(r->argv);
    r->argv = NULL;
    if (r->envp) {
        for (char **e = r->envp; *e; e++) free(*e);
        free(r->envp);
        r->envp = NULL;
    }
    if (r->fa_ok) posix_spawn_file_actions_destroy(&r->fa);
    if (r->attr_ok) posix_spawnattr_destroy(&r->attr);
    r->fa_ok = r->attr_ok = 0;
    return 0;
}

/* environ with opts.env's NAME=value over it, into r->envp (NULL-terminated). */
static void build_env(lua_State *L, int env, spawn_res *r)
{
    size_t n = 0, extra = 0;
    while (environ[n]) n++;
    lua_pushnil(L);
    while (lua_next(L, env)) { extra++; lua_pop(L, 1); }
    r->envp = calloc(n + extra + 1, sizeof *r->envp);
    if (!r->envp) luaL_error(L, "blt.spawn: out of memory");
    size_t k = 0;
    lua_pushnil(L);
    while (lua_next(L, env)) {
        int top = lua_gettop(L);
        if (lua_type(L, top - 1) != LUA_TSTRING) luaL_error(L, "blt.spawn: opts.env keys must be names");
        const char *name = plain(L, top - 1, "spawn", "an opts.env name");
        const char *val = plain(L, top, "spawn", "an opts.env value");
        if (!*name || strchr(name, '=')) luaL_error(L, "blt.spawn: opts.env name '%s' is empty or has '='", name);
        size_t ln = strlen(name), lv = strlen(val);
        char *e = malloc(ln + lv + 2);
        if (!e) luaL_error(L, "blt.spawn: out of memory");
        memcpy(e, name, ln);
        e[ln] = '=';
        memcpy(e + ln + 1, val, lv + 1);
        r->envp[k++] = e;
        lua_pop(L, 1);
    }
    /* the inherited variables that opts.env does not override */
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t ln = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        int over = 0;
        for (size_t j = 0; j < k && !over; j++) over = !strncmp(r->envp[j], environ[i], ln) && r->envp[j][ln] == '=';
        if (over) continue;
        if (!(r->envp[k] = strdup(environ[i]))) luaL_error(L, "blt.spawn: out of memory");
        k++;
    }
}

static int l_spawn(lua_State *L)
{
    if (!lua_istable(L, 1))
        return luaL_error(L, "blt.spawn: argv must be a table {program, args...}, got %s", luaL_typename(L, 1));
    int has_opts = !lua_isnoneornil(L, 2);
    if (has_opts && !lua_istable(L, 2))
        return luaL_error(L, "blt.spawn: opts must be a table, got %s", luaL_typename(L, 2));
    lua_settop(L, 2);
    lua_Integer argc = (lua_Integer)lua_rawlen(L, 1);
    if (argc < 1) return luaL_error(L, "blt.spawn: argv is empty (argv[1] is the program)");
    if (argc > 1 << 16) return luaL_error(L, "blt.spawn: argv has %I entries (at most %d)", argc, 1 << 16);
    luaL_checkstack(L, (int)argc + 16, "blt.spawn: argv");

    spawn_res *r = lua_newuserdatauv(L, sizeof *r, 0); /* index 3 */
    memset(r, 0, sizeof *r);
    lua_newtable(L);
    lua_pushcfunction(L, spawn_res_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);

    r->argv = calloc((size_t)argc + 1, sizeof *r->argv);
    if (!r->argv) return luaL_error(L, "blt.spawn: out of memory");
    for (lua_Integer i = 1; i <= argc; i++) {
        lua_rawgeti(L, 1, i); /* stays on the stack: keeps the string alive */
        char what[40];
        snprintf(what, sizeof what, "argv[%lld]", (long long)i);
        r->argv[i - 1] = (char *)plain(L, lua_gettop(L), "spawn", what);
    }
    if (posix_spawn_file_actions_init(&r->fa) != 0) return luaL_error(L, "blt.spawn: out of memory");
    r->fa_ok = 1;
    if (posix_spawnattr_init(&r->attr) != 0) return luaL_error(L, "blt.spawn: out of memory");
    r->attr_ok = 1;
    char **envp = environ;
    if (has_opts) {
        const char *in = opt_string(L, 2, "stdin"), *out = opt_string(L, 2, "stdout"), *err = opt_string(L, 2, "stderr");
        const char *cwd = opt_string(L, 2, "cwd");
        int rc = 0;
        if (in) rc = rc ? rc : posix_spawn_file_actions_addopen(&r->fa, 0, in, O_RDONLY, 0);
        if (out) rc = rc ? rc : posix_spawn_file_actions_addopen(&r->fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        if (err && out && !strcmp(err, out)) rc = rc ? rc : posix_spawn_file_actions_adddup2(&r->fa, 1, 2);
        else if (err) rc = rc ? rc : posix_spawn_file_actions_addopen(&r->fa, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        if (cwd) rc = rc ? rc : posix_spawn_file_actions_addchdir_np(&r->fa, cwd);
        if (rc) return luaL_error(L, "blt.spawn: %s", strerror(rc));
        int t = lua_getfield(L, 2, "env");
        if (t == LUA_TTABLE) {
            build_env(L, lua_gettop(L), r);
            envp = r->envp;
        } else if (t != LUA_TNIL) {
            return luaL_error(L, "blt.spawn: opts.env must be a table of NAME = value, got %s", luaL_typename(L, -1));
        }
    }

    /* As the C library's shell runner does: while the child runs, Ctrl-C and Ctrl-\ (sent to the whole
     * foreground group) are the child's to handle; this process then learns from its
     * status that it was stopped and acts on it. The child gets them back as they
     * were before (default unless they were ignored). */
    struct sigaction ign, old_int, old_quit;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGINT, &ign, &old_int);
    sigaction(SIGQUIT, &ign, &old_quit);
    sigset_t def;
    sigemptyset(&def);
    if (old_int.sa_handler != SIG_IGN) sigaddset(&def, SIGINT);
    if (old_quit.sa_handler != SIG_IGN) sigaddset(&def, SIGQUIT);
    posix_spawnattr_setsigdefault(&r->attr, &def);
    posix_spawnattr_setflags(&r->attr, POSIX_SPAWN_SETSIGDEF);

    pid_t pid;
    int rc = posix_spawnp(&pid, r->argv[0], &r->fa, &r->attr, r->argv, envp);
    int status = 0, werr = 0;
    if (rc == 0) {
        while (waitpid(pid, &status, 0) < 0) {
            if (errno != EINTR) { werr = errno; break; }
        }
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGQUIT, &old_quit, NULL);
    if (rc != 0 || werr) {
        lua_pushnil(L);
        lua_pushliteral(L, "error");
        lua_pushfstring(L, "blt.spawn: %s: %s", r->argv[0], strerror(rc ? rc : werr));
        return 3;
    }
    if (WIFSIGNALED(status)) {
        lua_pushnil(L);
        lua_pushliteral(L, "signal");
        lua_pushinteger(L, WTERMSIG(status));
    } else {
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
        if (code == 0) lua_pushboolean(L, 1);
        else lua_pushnil(L);
        lua_pushliteral(L, "exit");
        lua_pushinteger(L, code);
    }
    return 3;
}

static int l_which(lua_State *L)
{
    const char *name = plain(L, 1, "which", "name");
    if (!*name) return 0;
    if (strchr(name, '/')) {
        if (access(name, X_OK) == 0) { lua_pushstring(L, name); return 1; }
        return 0;
    }
    const char *path = getenv("PATH");
    if (!path) path = "/usr/local/bin:/usr/bin:/bin";
    luaL_Buffer b;
    for (const char *p = path;; p++) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        luaL_buffinit(L, &b);
        if (n == 0) luaL_addchar(&b, '.'); /* an empty entry is the current folder */
        else luaL_addlstring(&b, p, n);
        luaL_addchar(&b, '/');
        luaL_addstring(&b, name);
        luaL_pushresult(&b);
        const char *cand = lua_tostring(L, -1);
        struct stat st;
        if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0) return 1;
        lua_pop(L, 1);
        if (!end) break;
        p = end;
    }
    return 0;
}

static int l_mkdtemp(lua_State *L)
{
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    lua_pushfstring(L, "%s/blt-XXXXXX", dir);
    size_t n;
    const char *t = lua_tolstring(L, -1, &n);
    if (strlen(t) != n) return luaL_error(L, "blt.mkdtemp: TMPDIR contains a NUL byte");
    char *buf = malloc(n + 1);
    if (!buf) return luaL_error(L, "blt.mkdtemp: out of memory");
    memcpy(buf, t, n + 1);
    if (!mkdtemp(buf)) {
        int e = errno;
        free(buf);
        lua_pushnil(L);
        lua_pushfstring(L, "blt.mkdtemp: %s: %s", t, strerror(e));
        return 2;
    }
    lua_pushstring(L, buf);
    free(buf);
    return 1;
}

/* nftw's callback cannot carry state: the first failure is kept here (one thread runs Lua). */
static int rm_errno;
static char rm_where[PATH_MAX];

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st; (void)ftw;
    int r = type == FTW_DP ? rmdir(path) : unlink(path);
    if (r != 0 && errno != ENOENT) {
        rm_errno = errno;
        snprintf(rm_where, sizeof rm_where, "%s", path);
        return 1;
    }
    return 0;
}

static int l_rm_rf(lua_State *L)
{
    const char *path = plain(L, 1, "rm_rf", "path");
    if (!*path) return luaL_error(L, "blt.rm_rf: path is empty");
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT) { lua_pushboolean(L, 1); return 1; } /* already gone */
        lua_pushnil(L);
        lua_pushfstring(L, "blt.rm_rf: %s: %s", path, strerror(errno));
        return 2;
    }
    rm_errno = 0;
    /* FTW_PHYS: a link is removed itself, never followed; FTW_DEPTH: contents first */
    if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0) {
        lua_pushnil(L);
        if (rm_errno) lua_pushfstring(L, "blt.rm_rf: %s: %s", rm_where, strerror(rm_errno));
        else lua_pushfstring(L, "blt.rm_rf: %s: %s", path, strerror(errno));
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_getuid(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)getuid());
    return 1;
}

static const luaL_Reg functions[] = {
    {"spawn", l_spawn}, {"which", l_which}, {"mkdtemp", l_mkdtemp}, {"rm_rf", l_rm_rf}, {"getuid", l_getuid},
    {NULL, NULL}};

void bltL_open_proc(lua_State *L) { luaL_setfuncs(L, functions, 0); }
