/*
** cfut.c: the `cfut` program, a Lua 5.4 interpreter with the cfut module
** built in.  Options, `arg`, LUA_INIT and the REPL behave as in the stock
** `lua` program; cfut adds the worker traceback to uncaught task errors,
** shuts executors down at the end of the script and passes Ctrl-C on to
** the module.
*/

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "cfut.h"
#include "heap.h"

#define PROGNAME      "cfut"
#define PROMPT1       "> "
#define PROMPT2       ">> "
#define REPLCHUNK     "=stdin"
#define EOFMARK       "<eof>"
#define WORKERBANNER  "worker traceback (the error was raised in a worker):"

/* Prefix of error messages: argv[0] (PROGNAME if empty), NULL inside the
** REPL, as in lua.c. */
static const char *progname = PROGNAME;


/*
** {==================================================================
** Command line
** ===================================================================
*/

#define OPT_E   1     /* -E: ignore environment variables */
#define OPT_I   2     /* -i: REPL after the script */
#define OPT_V   4     /* -v (also set by -i) */
#define OPT_X   8     /* at least one -e */
#define OPT_H   16    /* -h or --help: the help, nothing else */
#define OPT_VER 32    /* --version: the version, nothing else */

typedef struct Options {
  int argc;
  char **argv;
  int flags;          /* OPT_* */
  int script;         /* index of the script name; argc when none */
  int bad;            /* index of the offending argument after an error */
} Options;

/* Check one option argv[*i] (advancing *i past an option's argument);
** returns 1 to go on, 0 when options end here, -1 on a bad option. */
static int checkoption (Options *o, int *i) {
  const char *a = o->argv[*i];
  switch (a[1]) {
    case '-':  /* '--', '--help', '--version' */
      if (strcmp(a, "--help") == 0) o->flags |= OPT_H;
      else if (strcmp(a, "--version") == 0) o->flags |= OPT_VER;
      else if (a[2] != '\0') return -1;
      else {
        (*i)++;  /* the script is the next argument */
        return 0;
      }
      return 1;
    case '\0':  /* '-': the script is stdin */
      return 0;
    case 'i':
      o->flags |= OPT_I;  /* -i implies -v */
      /* FALLTHROUGH */
    case 'v': case 'E': case 'W': case 'h':
      if (a[2] != '\0') return -1;
      if (a[1] == 'v' || a[1] == 'i') o->flags |= OPT_V;
      if (a[1] == 'E') o->flags |= OPT_E;
      if (a[1] == 'h') o->flags |= OPT_H;
      return 1;
    case 'e':
      o->flags |= OPT_X;  /* FALLTHROUGH */
    case 'l':
      if (a[2] != '\0') return 1;  /* argument attached: -lmod */
      (*i)++;
      if (o->argv[*i] == NULL || o->argv[*i][0] == '-') return -1;
      return 1;
    default:
      return -1;
  }
}

/* Scan the options; returns 0, or -1 with o->bad set. */
static int parseargs (Options *o) {
  int i;
  for (i = 1; i < o->argc && o->argv[i][0] == '-'; i++) {
    int opt = i;
    int r = checkoption(o, &i);
    if (r < 0) {
      o->bad = opt;
      return -1;
    }
    if (r == 0) break;
  }
  o->script = i;
  return 0;
}

/* lua.c's list of options, for the usage and the help. */
#define OPTIONS \
  "  -e stat   execute string 'stat'\n" \
  "  -i        enter interactive mode after executing 'script'\n" \
  "  -l mod    require library 'mod' into global 'mod'\n" \
  "  -l g=mod  require library 'mod' into global 'g'\n" \
  "  -v        show version information\n" \
  "  -E        ignore environment variables\n" \
  "  -W        turn warnings on\n" \
  "  --        stop handling options\n" \
  "  -         stop handling options and execute stdin\n"

/* What is wrong with argument 'badoption', and lua.c's usage, on stderr. */
static void usage (const char *badoption) {
  if (badoption[1] == 'e' || badoption[1] == 'l')
    fprintf(stderr, "%s: '%s' needs argument\n", progname, badoption);
  else
    fprintf(stderr, "%s: unrecognized option '%s'\n", progname, badoption);
  fprintf(stderr, "usage: %s [options] [script [args]]\n"
                  "Available options are:\n" OPTIONS, progname);
  fflush(stderr);
}

/* cfut -h, --help: on stdout, as GNU programs do. */
static void help (void) {
  printf("usage: %s [options] [script [args]]\n"
    "Run a Lua 5.4 script as lua5.4 does, with the module cfut built in\n"
    "(require \"cfut\": concurrent.futures for Lua).  With no arguments, an\n"
    "interactive prompt on a terminal, else the script on stdin.\n"
    "Available options are:\n" OPTIONS
    "cfut adds:\n"
    "  -h, --help  show this help and exit\n"
    "  --version   show version information and exit\n"
    "Environment: LUA_INIT_5_4 or LUA_INIT (code or @file, run first),\n"
    "LUA_PATH_5_4 or LUA_PATH, LUA_CPATH_5_4 or LUA_CPATH, as lua5.4.\n"
    "See the manual page cfut(1).\n", progname);
  fflush(stdout);
}

/* "cfut x.y.z  Lua 5.4.n  Copyright (C) ... Lua.org, PUC-Rio": lua.c's line
** intact after cfut's version (tools match on its end). */
static void printversion (void) {
  printf("%s  %s\n", CFUT_VERSION, LUA_COPYRIGHT);
  fflush(stdout);
}

/* }================================================================== */


/*
** {==================================================================
** Ctrl-C
** ===================================================================
*/

/* Set before a handler is installed, read by the handler. */
static lua_State *sigstate = NULL;
static pthread_t mainthread;

/* SA_RESTART, as glibc's signal() does for lua.c. */
static void setsigint (void (*handler) (int)) {
  struct sigaction sa;
  sa.sa_handler = handler;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
}

/* Count hook set by the handler: stop the running Lua code. */
static void stophook (lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);  /* once */
  luaL_error(L, "interrupted!");
}

/*
** Only the main thread may touch its state, so a signal that lands on
** another thread is passed to the main thread.  A count hook (not call
** hooks) so that it never fires inside the message handler, a C function.
*/
static void onsigint (int sig) {
  if (!pthread_equal(pthread_self(), mainthread)) {
    pthread_kill(mainthread, sig);
    return;
  }
  setsigint(SIG_DFL);  /* a second Ctrl-C ends the process */
  cfut_interrupt();
  lua_sethook(sigstate, stophook, LUA_MASKCOUNT, 1);
}

/* }================================================================== */


/*
** {==================================================================
** Running chunks
** ===================================================================
*/

/* "progname: msg" on stderr ("msg" alone inside the REPL). */
static void message (const char *msg) {
  if (progname != NULL) fprintf(stderr, "%s: ", progname);
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
}

/* Print the error on top of the stack, if any, and pop it. */
static int report (lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    message(msg != NULL ? msg : "(error object is not a string)");
    lua_pop(L, 1);
  }
  return status;
}

/* Push the error value at index 1 as a string, honouring __tostring. */
static const char *errstring (lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg != NULL) {
    lua_pushvalue(L, 1);
    return msg;
  }
  if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
    return lua_tostring(L, -1);
  return lua_pushfstring(L, "(error object is a %s value)",
                         luaL_typename(L, 1));
}

/*
** Message handler: the message and a traceback, then the worker's own
** traceback when the value is a task error re-raised by result().  The
** check must come first, while the value is still the one raised.
*/
static int msghandler (lua_State *L) {
  int fromtask;
  lua_settop(L, 1);
  fromtask = cfut_pushtaskerror(L, 1);  /* worker traceback at 2 */
  luaL_traceback(L, L, errstring(L), 1);
  if (fromtask) {
    lua_pushliteral(L, "\n" WORKERBANNER "\n");
    lua_pushvalue(L, 2);
    lua_concat(L, 3);
  }
  return 1;
}

/* Call the function under its 'narg' arguments with the message handler,
** Ctrl-C turned into an error meanwhile. */
static int docall (lua_State *L, int narg, int nres) {
  int status;
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);  /* put it under function and args */
  sigstate = L;
  setsigint(onsigint);
  status = lua_pcall(L, narg, nres, base);
  setsigint(SIG_DFL);
  if (lua_gethook(L) == stophook)  /* Ctrl-C after the last instruction */
    lua_sethook(L, NULL, 0, 0);
  lua_remove(L, base);
  return status;
}

/* Run a chunk that 'status' says was loaded; report its error. */
static int dochunk (lua_State *L, int status) {
  if (status == LUA_OK) status = docall(L, 0, 0);
  return report(L, status);
}

/* Run the string s as a chunk named 'name'. */
static int dostring (lua_State *L, const char *s, const char *name) {
  return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* -l mod or -l g=mod: global g (or mod) = require(mod) */
static int dolibrary (lua_State *L, const char *spec) {
  int status;
  const char *eq = strchr(spec, '=');
  const char *mod = (eq != NULL) ? eq + 1 : spec;
  size_t glen = (eq != NULL) ? (size_t)(eq - spec) : strlen(spec);
  lua_pushlstring(L, spec, glen);  /* global name */
  lua_getglobal(L, "require");
  lua_pushstring(L, mod);
  status = docall(L, 1, 1);
  if (status == LUA_OK) {
    lua_setglobal(L, lua_tostring(L, -2));
    lua_pop(L, 1);  /* the global name */
    return LUA_OK;
  }
  lua_remove(L, -2);  /* the global name, under the error */
  return report(L, status);
}

/* LUA_INIT_5_4, else LUA_INIT: '@file' or code. */
static int runinit (lua_State *L) {
  const char *name = "=LUA_INIT_5_4";
  const char *init = getenv(name + 1);
  if (init == NULL) {
    name = "=LUA_INIT";
    init = getenv(name + 1);
  }
  if (init == NULL) return LUA_OK;
  if (init[0] == '@') return dochunk(L, luaL_loadfile(L, init + 1));
  return dostring(L, init, name);
}

/* Run the -e, -l and -W options in order; returns 0 after an error. */
static int runoptions (lua_State *L, const Options *o) {
  int i;
  for (i = 1; i < o->script; i++) {
    const char *a = o->argv[i];
    if (a[1] == 'e' || a[1] == 'l') {
      const char *val = (a[2] != '\0') ? a + 2 : o->argv[++i];
      int status = (a[1] == 'e') ? dostring(L, val, "=(command line)")
                                 : dolibrary(L, val);
      if (status != LUA_OK) return 0;
    }
    else if (a[1] == 'W')
      lua_warning(L, "@on", 0);
  }
  return 1;
}

/* Push arg[1..n] of the global 'arg'; returns n. */
static int pushargs (lua_State *L) {
  int i, n;
  if (lua_getglobal(L, "arg") != LUA_TTABLE)
    luaL_error(L, "'arg' is not a table");
  n = (int)luaL_len(L, -1);
  luaL_checkstack(L, n + 3, "too many arguments to script");
  for (i = 1; i <= n; i++)
    lua_rawgeti(L, -i, i);
  lua_remove(L, -i);  /* the table 'arg' */
  return n;
}

/* Run the script argv[script] ('-' is stdin unless after '--'). */
static int runscript (lua_State *L, const Options *o) {
  const char *fname = o->argv[o->script];
  int status;
  if (strcmp(fname, "-") == 0 && strcmp(o->argv[o->script - 1], "--") != 0)
    fname = NULL;
  status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int n = pushargs(L);
    status = docall(L, n, 0);
  }
  return report(L, status);
}

/* }================================================================== */


/*
** {==================================================================
** Read-eval-print loop, as lua.c's: with GNU readline (line editing and
** history) when the Makefile found it (CFUT_READLINE), else plain lines
** from stdin
** ===================================================================
*/

#if defined(CFUT_READLINE)

#include <readline/readline.h>
#include <readline/history.h>

static void initreadline (void) {
  rl_readline_name = PROGNAME;  /* for $if cfut in ~/.inputrc */
}

static int pushmalloced (lua_State *L) {
  lua_pushstring(L, (const char *)lua_touserdata(L, 1));
  return 1;
}

/* Read a line after 'prompt' and push it without its newline; returns 0
** at end of input.  readline echoes the line (also when stdin is not a
** terminal, as in lua5.4). */
static int readline_push (lua_State *L, const char *prompt) {
  char *line = readline(prompt);
  int status;
  if (line == NULL) return 0;
  lua_pushcfunction(L, pushmalloced);  /* so that 'line' is freed always */
  lua_pushlightuserdata(L, line);
  status = lua_pcall(L, 1, 1, 0);
  free(line);
  if (status != LUA_OK) lua_error(L);
  return 1;
}

/* Keep a chunk in the history (up-arrow recalls it). */
static void saveline (const char *line) {
  add_history(line);
}

#else

static void initreadline (void) {
}

/* Print 'prompt', read a line of any length and push it without its
** newline; returns 0 at end of input. */
static int readline_push (lua_State *L, const char *prompt) {
  char buf[512];
  int got = 0;
  luaL_Buffer b;
  fputs(prompt, stdout);
  fflush(stdout);
  luaL_buffinit(L, &b);
  while (fgets(buf, sizeof(buf), stdin) != NULL) {
    size_t len = strlen(buf);
    int eol = (len > 0 && buf[len - 1] == '\n');
    got = 1;
    luaL_addlstring(&b, buf, len - eol);
    if (eol) break;
  }
  luaL_pushresult(&b);
  if (!got) lua_pop(L, 1);
  return got;
}

static void saveline (const char *line) {
  (void)line;
}

#endif

/* Push the prompt: _PROMPT or _PROMPT2 through tostring if set (a table
** with __tostring too, as in lua.c), else the default. */
static const char *pushprompt (lua_State *L, int first) {
  if (lua_getglobal(L, first ? "_PROMPT" : "_PROMPT2") == LUA_TNIL) {
    lua_pop(L, 1);
    return lua_pushstring(L, first ? PROMPT1 : PROMPT2);
  }
  luaL_tolstring(L, -1, NULL);
  lua_remove(L, -2);  /* the value */
  return lua_tostring(L, -1);
}

/* Push the next line without its newline ("=x" on a first line becomes
** "return x"); returns 0 at end of input. */
static int pushline (lua_State *L, int first) {
  int got = readline_push(L, pushprompt(L, first));
  lua_remove(L, got ? -2 : -1);  /* the prompt */
  if (!got) return 0;
  if (first && lua_tostring(L, -1)[0] == '=') {
    lua_pushfstring(L, "return %s", lua_tostring(L, -1) + 1);
    lua_remove(L, -2);
  }
  return 1;
}

/* Compile the line at 1 as an expression: on success push the function
** and keep a non-empty line in the history. */
static int tryexpr (lua_State *L) {
  const char *line = lua_tostring(L, 1);
  const char *code = lua_pushfstring(L, "return %s;", line);
  int status = luaL_loadbuffer(L, code, strlen(code), REPLCHUNK);
  lua_remove(L, -2);  /* the code */
  if (status == LUA_OK) {
    if (line[0] != '\0') saveline(line);
  }
  else lua_pop(L, 1);  /* the error */
  return status;
}

/* Does the syntax error on top say the chunk merely ended too soon? */
static int incomplete (lua_State *L, int status) {
  size_t len, mlen = sizeof(EOFMARK) - 1;
  const char *msg;
  if (status != LUA_ERRSYNTAX) return 0;
  msg = lua_tolstring(L, -1, &len);
  return len >= mlen && strcmp(msg + len - mlen, EOFMARK) == 0;
}

/* Compile the code at 1 as a statement, reading more lines while it is
** incomplete; push the function or the error, keep the chunk (all its
** lines) in the history. */
static int multiline (lua_State *L) {
  for (;;) {
    size_t len;
    const char *code = lua_tolstring(L, 1, &len);
    int status = luaL_loadbuffer(L, code, len, REPLCHUNK);
    if (!incomplete(L, status) || !pushline(L, 0)) {
      saveline(code);
      return status;
    }
    lua_remove(L, -2);  /* the error message */
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);  /* code .. "\n" .. next line */
  }
}

/* Read and compile one chunk onto an empty stack: function or error;
** returns its status, -1 at end of input. */
static int readchunk (lua_State *L) {
  int status;
  lua_settop(L, 0);
  if (!pushline(L, 1)) return -1;
  if ((status = tryexpr(L)) != LUA_OK) status = multiline(L);
  lua_remove(L, 1);  /* the code */
  return status;
}

/* Print every value on the stack through the global 'print'. */
static void printresults (lua_State *L) {
  int n = lua_gettop(L);
  if (n == 0) return;
  luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
  lua_getglobal(L, "print");
  lua_insert(L, 1);
  if (lua_pcall(L, n, 0, 0) != LUA_OK) {
    const char *err = lua_tostring(L, -1);
    message(lua_pushfstring(L, "error calling 'print' (%s)",
                            err != NULL ? err : "?"));
  }
}

/* Read, run and print lines until the end of stdin. */
static void repl (lua_State *L) {
  int status;
  const char *oldprogname = progname;
  progname = NULL;
  initreadline();
  while ((status = readchunk(L)) != -1) {
    cfut_clear_interrupt();  /* forget a Ctrl-C of an earlier line */
    if (status == LUA_OK) status = docall(L, 0, LUA_MULTRET);
    if (status == LUA_OK) printresults(L);
    else report(L, status);
  }
  lua_settop(L, 0);
  fputs("\n", stdout);
  fflush(stdout);
  progname = oldprogname;
}

/* }================================================================== */


/*
** {==================================================================
** Startup and end
** ===================================================================
*/

/* Standard libraries and the built-in cfut module; package.path and
** cpath stay as the package library made them from the environment. */
static void openlibs (lua_State *L) {
  lua_gc(L, LUA_GCSTOP);
  luaL_openlibs(L);  /* the package library reads LUA_PATH here */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_cfut);
  lua_setfield(L, -2, CFUT_MODNAME);
  lua_pop(L, 1);
  lua_gc(L, LUA_GCRESTART);
  lua_gc(L, LUA_GCGEN, 0, 0);
}

/* The global 'arg': script at 0, its arguments above, the rest below (all
** above 0 from the program name when there is no script, as lua.c). */
static void makeargtable (lua_State *L, const Options *o) {
  int i;
  int zero = (o->script < o->argc) ? o->script : 0;
  lua_createtable(L, o->argc - zero, zero + 1);
  for (i = 0; i < o->argc; i++) {
    lua_pushstring(L, o->argv[i]);
    lua_rawseti(L, -2, i - zero);
  }
  lua_setglobal(L, "arg");
}

/* No script, no -e, no -v: a terminal gets the REPL, else run stdin. */
static int runstdin (lua_State *L) {
  if (isatty(STDIN_FILENO)) {
    printversion();
    repl(L);
    return LUA_OK;
  }
  return dochunk(L, luaL_loadfile(L, NULL));
}

/* Everything but the end, in protected mode; returns true on success. */
static int pmain (lua_State *L) {
  const Options *o = (const Options *)lua_touserdata(L, 1);
  int noscript = (o->script >= o->argc);
  lua_settop(L, 0);
  luaL_checkversion(L);
  if (o->flags & OPT_V) printversion();
  if (o->flags & OPT_E) {  /* the package library ignores LUA_PATH... */
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  }
  openlibs(L);
  makeargtable(L, o);
  if (!(o->flags & OPT_E) && runinit(L) != LUA_OK) return 0;
  if (!runoptions(L, o)) return 0;
  if (!noscript && runscript(L, o) != LUA_OK) return 0;
  if (o->flags & OPT_I)
    repl(L);
  else if (noscript && !(o->flags & (OPT_X | OPT_V)))
    if (runstdin(L) != LUA_OK) return 0;
  lua_pushboolean(L, 1);
  return 1;
}

/* cfut_atexit as a function to call protected. */
static int atexitcall (lua_State *L) {
  cfut_atexit(L);
  return 0;
}

/* End of the script: shut executors down, run pending callbacks. */
static int finish (lua_State *L) {
  lua_settop(L, 0);
  lua_pushcfunction(L, atexitcall);
  return report(L, docall(L, 0, 0));
}

int main (int argc, char **argv) {
  Options o;
  lua_State *L;
  int status, ok;
  o.argc = argc;
  o.argv = argv;
  o.flags = 0;
  if (argv[0] != NULL && argv[0][0] != '\0') progname = argv[0];
  if (parseargs(&o) != 0) {
    usage(argv[o.bad]);
    return EXIT_FAILURE;
  }
  if (o.flags & (OPT_H | OPT_VER)) {  /* and nothing else */
    if (o.flags & OPT_H) help();
    else printversion();
    return EXIT_SUCCESS;
  }
  mainthread = pthread_self();
  L = heap_newstate();
  if (L == NULL) {
    message("cannot create state: not enough memory");
    return EXIT_FAILURE;
  }
  lua_pushcfunction(L, pmain);
  lua_pushlightuserdata(L, &o);
  status = lua_pcall(L, 1, 1, 0);
  ok = (status == LUA_OK && lua_toboolean(L, -1));
  report(L, status);
  if (!ok) cfut_scriptfailed();  /* runaway tasks are stopped, not awaited */
  if (finish(L) != LUA_OK) ok = 0;
  heap_close(L);
  return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* }================================================================== */
