/* The ./blt launcher: a Lua 5.4 interpreter with the framework preloaded.
 *   ./blt SCRIPT.lua [ARGS...]   run a script (arg as the standalone lua sets it)
 *   ./blt -e 'CODE' [...]        run chunks
 *   ./blt                        interactive prompt
 * Modules are found relative to the executable, from any working directory. */
#include "dist.h"
#include "lua_blt.h"
#include "thread.h"
#include <lauxlib.h>
#include <limits.h>
#include <signal.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* An error object that is a table with an integer exit_status (blt.util.user_error:
 * a mistake in the user's input or folders, already worded for them) ends the process
 * with that status and its message alone, without a traceback. */
static int user_status;

static int msghandler(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TTABLE) {
        lua_getfield(L, 1, "exit_status");
        int isint = 0;
        lua_Integer st = lua_tointegerx(L, -1, &isint);
        lua_pop(L, 1);
        if (isint && st >= 2 && st <= 125 && luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
            user_status = (int)st;
            return 1;
        }
    }
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static int report(lua_State *L, int status)
{
    if (status != LUA_OK) {
        if (user_status) fprintf(stderr, "%s\n", lua_tostring(L, -1));
        else fprintf(stderr, "blt: %s\n", lua_tostring(L, -1));
        fflush(stderr);
        lua_pop(L, 1);
    }
    return status;
}

static int docall(lua_State *L, int narg, int nres)
{
    int base = lua_gettop(L) - narg;
    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
    int status = lua_pcall(L, narg, nres, base);
    lua_remove(L, base);
    return status;
}

/* package.path gets <dir of executable>/lua first; blt.core is preloaded. */
static void setup_paths(lua_State *L, const char *argv0)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        if (!realpath(argv0, exe)) snprintf(exe, sizeof exe, "%s", argv0);
    } else {
        exe[n] = 0;
    }
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    else snprintf(exe, sizeof exe, ".");
    /* builds under build/<kind>/ find the modules two folders up */
    for (int up = 0; up < 2; up++) {
        char probe[PATH_MAX + 32];
        snprintf(probe, sizeof probe, "%s/lua/blt/init.lua", exe);
        if (access(probe, R_OK) == 0) break;
        slash = strrchr(exe, '/');
        if (!slash) break;
        *slash = 0;
    }
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;%s", exe, exe, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 1);
    lua_pushstring(L, exe);
    lua_setglobal(L, "BLT_HOME");
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_blt_core);
    lua_setfield(L, -2, "blt.core");
    lua_pop(L, 2);
}

static void create_arg(lua_State *L, char **argv, int argc, int script)
{
    lua_createtable(L, argc - script, script + 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script);
    }
    lua_setglobal(L, "arg");
}

static int dochunk(lua_State *L, int status)
{
    if (status == LUA_OK) status = docall(L, 0, 0);
    return report(L, status);
}

static int run_script(lua_State *L, const char *fname, int nargs_from, int argc, char **argv)
{
    int status = luaL_loadfile(L, fname);
    if (status == LUA_OK) {
        int n = argc - nargs_from;
        luaL_checkstack(L, n + 3, "too many arguments to script");
        for (int i = nargs_from; i < argc; i++) lua_pushstring(L, argv[i]);
        status = docall(L, n, 0);
    }
    return report(L, status);
}

/* ---- interactive prompt: expressions print their values; incomplete input continues ---- */

static int incomplete(lua_State *L, int status)
{
    if (status == LUA_ERRSYNTAX) {
        size_t lmsg;
        const char *msg = lua_tolstring(L, -1, &lmsg);
        if (lmsg >= 5 && strcmp(msg + lmsg - 5, "<eof>") == 0) {
            lua_pop(L, 1);
            return 1;
        }
    }
    return 0;
}

static void repl(lua_State *L)
{
    char line[4096];
    char *code = NULL;
    size_t len = 0;
    printf("blt (Lua %s.%s) -- the framework is loaded as 'blt'; Ctrl-D quits\n", LUA_VERSION_MAJOR, LUA_VERSION_MINOR);
    if (luaL_dostring(L, "blt = require 'blt'") != LUA_OK) report(L, LUA_ERRRUN);
    for (;;) {
        fputs(len ? ">> " : "> ", stdout);
        fflush(stdout);
        if (!fgets(line, sizeof line, stdin)) { putchar('\n'); break; }
        size_t n = strlen(line);
        char *grown = realloc(code, len + n + 1);
        if (!grown) break;
        code = grown;
        memcpy(code + len, line, n + 1);
        len += n;
        /* an expression prints its value; otherwise a statement, maybe unfinished */
        lua_pushfstring(L, "return %s", code);
        int status = luaL_loadbuffer(L, lua_tostring(L, -1), strlen(lua_tostring(L, -1)), "=stdin");
        lua_remove(L, -2);
        if (status != LUA_OK) {
            lua_pop(L, 1);
            status = luaL_loadbuffer(L, code, len, "=stdin");
            if (incomplete(L, status)) continue;
        }
        len = 0;
        int base = lua_gettop(L);
        if (status == LUA_OK) status = docall(L, 0, LUA_MULTRET);
        if (status == LUA_OK) {
            int nres = lua_gettop(L) - base + 1;
            if (nres > 0) {
                lua_getglobal(L, "print");
                lua_insert(L, -(nres + 1));
                if (lua_pcall(L, nres, 0, 0) != LUA_OK) report(L, LUA_ERRRUN);
            }
        } else {
            report(L, status);
        }
        lua_settop(L, 0);
    }
    free(code);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: blt [SCRIPT.lua [ARGS...]]\n"
            "       blt -e 'CODE' [-e 'CODE' ...]\n"
            "       blt            (interactive prompt)\n"
            "environment: BLT_THREADS sets the thread count (default: all cores, shared among\n"
            "             the processes that mpirun starts on one machine)\n");
}

int main(int argc, char **argv)
{
    lua_State *L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "blt: cannot create the Lua state (out of memory)\n");
        return 1;
    }
    /* a file-size limit (ulimit -f) makes a write fail with EFBIG, which the writer
     * reports with the file's name (the last checkpoint kept), instead of killing us */
    signal(SIGXFSZ, SIG_IGN);
    luaL_openlibs(L);
    setup_paths(L, argv[0]);
    int status = LUA_OK;
    if (argc < 2) {
        create_arg(L, argv, argc, 0);
        repl(L);
    } else if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage();
    } else if (!strcmp(argv[1], "-e")) {
        int i = 1;
        create_arg(L, argv, argc, 0);
        while (status == LUA_OK && i < argc && !strcmp(argv[i], "-e")) {
            if (i + 1 >= argc) { usage(); status = LUA_ERRRUN; break; }
            status = dochunk(L, luaL_loadbuffer(L, argv[i + 1], strlen(argv[i + 1]), "=(command line)"));
            i += 2;
        }
        if (status == LUA_OK && i < argc) {
            create_arg(L, argv, argc, i);
            status = run_script(L, argv[i], i + 1, argc, argv);
        }
    } else if (argv[1][0] == '-' && argv[1][1] != 0) {
        fprintf(stderr, "blt: unknown option '%s'\n", argv[1]);
        usage();
        status = LUA_ERRRUN;
    } else {
        create_arg(L, argv, argc, 1);
        status = run_script(L, argv[1], 2, argc, argv);
    }
    lua_close(L);
    blt_threads_shutdown();
    /* under mpirun: a failed process ends the whole job, so none waits for it forever */
    if (status == LUA_OK) blt_dist_finalize();
    else blt_dist_abort(NULL, user_status ? user_status : 1);
    return status == LUA_OK ? 0 : user_status ? user_status : 1;
}
