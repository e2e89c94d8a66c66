/* What a training run needs from the operating system and Lua's standard library
 * lacks: folders (create, list), an exclusive lock on a run folder, files written
 * without touching any other, and signals that ask a run to stop.
 *
 *   core.mkdir(path)              creates path and its parents; true, or nil and a message
 *   core.listdir(path)            names in a folder (without . and ..), or nil and a message
 *   core.lkind(path)              "file", "folder", "link" (a symbolic link, not followed)
 *                                 or "other"; nil and a message when path is missing
 *   core.write_file(path, bytes)  path gets bytes through a new temporary file renamed
 *                                 over it (safefile.h: a symbolic link at path is
 *                                 replaced, never followed; a failed write leaves path as
 *                                 it was); true, or nil and a message naming path
 *   core.lock(path)               takes an exclusive lock on the file path (created if
 *                                 missing; a symbolic link is refused), held until the
 *                                 process ends; true, or nil and a message naming the
 *                                 process that holds it
 *   core.catch_signals(on)        SIGINT, SIGTERM and SIGHUP only set a flag (on), or
 *                                 take their default action again (off)
 *   core.interrupted()            the signal caught since then: name and number, or nil */
#include "lua_blt.h"
#include "safefile.h"
#include <lauxlib.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* A path for the system: a Lua string without NUL bytes (which C would cut silently). */
static const char *check_path(lua_State *L, int idx, const char *fn)
{
    size_t n;
    const char *p = luaL_checklstring(L, idx, &n);
    if (n == 0) luaL_error(L, "blt.%s: the path is empty", fn);
    if (strlen(p) != n) luaL_error(L, "blt.%s: the path contains a NUL byte", fn);
    return p;
}

static int fail(lua_State *L, const char *fn, const char *path)
{
    lua_pushnil(L);
    lua_pushfstring(L, "blt.%s: %s: %s", fn, path, strerror(errno));
    return 2;
}

static int l_mkdir(lua_State *L)
{
    const char *path = check_path(L, 1, "mkdir");
    size_t n = strlen(path);
    char *buf = malloc(n + 1);
    if (!buf) return luaL_error(L, "blt.mkdir: out of memory");
    memcpy(buf, path, n + 1);
    /* each parent in turn, then the folder itself; an existing folder is fine */
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        struct stat st;
        if (mkdir(buf, 0777) != 0 && !(errno == EEXIST && stat(buf, &st) == 0 && S_ISDIR(st.st_mode))) {
            if (errno == EEXIST) errno = ENOTDIR;
            int r = fail(L, "mkdir", buf);
            free(buf);
            return r;
        }
        buf[i] = c;
    }
    free(buf);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_listdir(lua_State *L)
{
    const char *path = check_path(L, 1, "listdir");
    DIR *d = opendir(path);
    if (!d) return fail(L, "listdir", path);
    lua_newtable(L);
    lua_Integer k = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        lua_pushstring(L, e->d_name);
        lua_rawseti(L, -2, ++k);
    }
    closedir(d);
    return 1;
}

static int l_lkind(lua_State *L)
{
    const char *path = check_path(L, 1, "lkind");
    struct stat st;
    if (lstat(path, &st) != 0) return fail(L, "lkind", path);
    lua_pushstring(L, S_ISLNK(st.st_mode) ? "link" : S_ISDIR(st.st_mode) ? "folder" : S_ISREG(st.st_mode) ? "file" : "other");
    return 1;
}

static int l_write_file(lua_State *L)
{
    const char *path = check_path(L, 1, "write_file");
    size_t n;
    const char *data = luaL_checklstring(L, 2, &n);
    if (blt_write_atomic("blt.write_file", path, data, n, 1) != BLT_OK) {
        lua_pushnil(L);
        lua_pushstring(L, blt_errmsg());
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* The lock is an flock on an open descriptor that is never closed: the kernel drops
 * it when the process ends, however it ends (SIGKILL included), so a stale lock file
 * never blocks a later run. The file holds the owner's pid, for the message. */
static int l_lock(lua_State *L)
{
    const char *path = check_path(L, 1, "lock");
    /* O_NOFOLLOW: a symbolic link here would have us truncate another file */
    int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd < 0 && errno == ELOOP) {
        lua_pushnil(L);
        lua_pushfstring(L, "blt.lock: %s is a symbolic link: a run writes only its own files (remove the link)", path);
        return 2;
    }
    if (fd < 0) return fail(L, "lock", path);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        lua_pushnil(L);
        lua_pushfstring(L, "blt.lock: %s is not a regular file", path);
        return 2;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        char owner[32] = "";
        ssize_t r = pread(fd, owner, sizeof owner - 1, 0);
        owner[r > 0 ? r : 0] = '\0';
        owner[strcspn(owner, "\n")] = '\0';
        close(fd);
        lua_pushnil(L);
        if (err == EWOULDBLOCK)
            lua_pushfstring(L, "blt.lock: %s is held by another process%s%s%s", path, *owner ? " (pid " : "",
                            owner, *owner ? ")" : "");
        else
            lua_pushfstring(L, "blt.lock: %s: %s", path, strerror(err));
        return 2;
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) { /* the pid is only for messages */ }
    lua_pushboolean(L, 1);
    return 1;
}

/* The signals only set a flag; the training loop checks it between steps, saves a
 * checkpoint and stops, so an interrupt never tears a step or a save. SIGHUP (a
 * closed terminal or ssh session) is treated like SIGTERM. */
static volatile sig_atomic_t pending_signal;

static void on_signal(int sig) { pending_signal = sig; }

static int l_catch_signals(lua_State *L)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = lua_toboolean(L, 1) || lua_isnone(L, 1) ? on_signal : SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    pending_signal = 0;
    return 0;
}

static int l_interrupted(lua_State *L)
{
    int sig = pending_signal;
    if (!sig) return 0;
    lua_pushstring(L, sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "signal");
    lua_pushinteger(L, sig);
    return 2;
}

static const luaL_Reg functions[] = {
    {"mkdir", l_mkdir}, {"listdir", l_listdir}, {"lkind", l_lkind}, {"write_file", l_write_file}, {"lock", l_lock},
    {"catch_signals", l_catch_signals}, {"interrupted", l_interrupted}, {NULL, NULL}};

void bltL_open_run(lua_State *L) { luaL_setfuncs(L, functions, 0); }
