-- host_spec.lua: the `cfut` program (options, arg, LUA_INIT, errors, the
-- end of the script, Ctrl-C, the REPL), run as a child process.

local shell = require "shell"
local q, readfile, writefile = shell.q, shell.readfile, shell.writefile
local BIN = assert(os.getenv("CFUT_BIN"), "CFUT_BIN is not set")

-- BIN as a pattern: messages start with the program's argv[0], as lua.c's.
local PROG = BIN:gsub("%p", "%%%0")
local ERR = "^" .. PROG .. ": "

local have_cfut, futures = pcall(require, "cfut")

-- Seconds, for deadlines (cfut's clock if the module loads here).
local function now ()
  if have_cfut then return futures.monotonic() end
  return os.time()
end

local function pause ()
  if have_cfut then futures.sleep(0.02) else os.execute("sleep 0.02") end
end

-- Poll cond() until it returns a true value or 'limit' seconds pass.
local function wait_for (cond, limit)
  local deadline = now() + limit
  repeat
    local v = cond()
    if v then return v end
    pause()
  until now() > deadline
  return cond()
end

local tmp = os.tmpname()
os.remove(tmp)
assert(os.execute("mkdir " .. q(tmp)))

local nfiles = 0
-- A new file in the temporary directory with contents s.
local function tmpfile (s, name)
  nfiles = nfiles + 1
  return writefile(tmp .. "/" .. (name or ("f" .. nfiles .. ".lua")), s)
end

-- Run BIN with the shell words 'args'; opts.stdin (a string), opts.env
-- (shell assignments), opts.cwd.  LUA_INIT* are unset unless opts.env sets
-- them.  Returns {code = exit status, out = stdout, err = stderr}.
local function run (args, opts)
  opts = opts or {}
  local out, err = tmp .. "/stdout", tmp .. "/stderr"
  local input = writefile(tmp .. "/stdin", opts.stdin or "")
  local cmd = string.format(
    "%senv -u LUA_INIT -u LUA_INIT_5_4 %s timeout 30 %s %s <%s >%s 2>%s",
    opts.cwd and ("cd " .. q(opts.cwd) .. " && ") or "", opts.env or "",
    q(BIN), args, q(input), q(out), q(err))
  local _, _, code = os.execute(cmd)
  return { code = code, out = readfile(out), err = readfile(err) }
end

-- Run a script (source text) with the shell words 'args' after it.
local function script (src, args, opts)
  return run(q(tmpfile(src)) .. " " .. (args or ""), opts)
end

-- Start BIN in the background with the shell words 'args' (quoted paths
-- of files) and stdin from the file 'input' (default /dev/null); returns
-- the paths of its stdout, stderr, pid and exit status files.
local function spawn_run (args, input)
  nfiles = nfiles + 1
  local base = tmp .. "/bg" .. nfiles
  local p = { out = base .. ".out", err = base .. ".err",
              pid = base .. ".pid", rc = base .. ".rc" }
  local inner = string.format("echo $$ >%s; exec %s %s", q(p.pid), q(BIN),
                              args)
  assert(os.execute(string.format(
    "(env -u LUA_INIT -u LUA_INIT_5_4 timeout 30 sh -c %s >%s 2>%s " ..
    "<%s; echo $? >%s) >/dev/null 2>&1 &",
    q(inner), q(p.out), q(p.err), q(input or "/dev/null"), q(p.rc))))
  return p
end

-- Start BIN on a script (source text) in the background.
local function spawn (src)
  return spawn_run(q(tmpfile(src)))
end

-- The exit status of a spawned process, once it has ended.
local function status (p)
  local s = readfile(p.rc)
  return s and s:match("^(%d+)\n") and tonumber(s:match("^%d+"))
end

local function printed (p, what)
  local s = readfile(p.out)
  return s and s:find(what, 1, true) ~= nil
end

local function signal (p, sig)
  local pid = assert(tonumber(readfile(p.pid)), "no pid")
  assert(os.execute("kill -" .. sig .. " " .. pid))
end

local function has (s, what)
  return s ~= nil and s:find(what, 1, true) ~= nil
end

describe("the cfut host", function ()

  teardown(function ()
    os.execute("rm -rf " .. q(tmp))
  end)

  describe("option -v", function ()
    it("prints the cfut version and the Lua copyright", function ()
      local r = run("-v")
      assert.are.equal(0, r.code)
      assert.matches("^cfut %d+%.%d+%.%d+  Lua 5%.4%.%d+  Copyright %(C%) " ..
                     "1994%-%d+ Lua%.org, PUC%-Rio\n$", r.out)
      assert.are.equal("", r.err)
    end)

    it("ends with lua5.4's own line, intact", function ()
      local f = assert(io.popen("lua5.4 -v"))
      local lua = f:read("a")
      f:close()
      assert.matches("^Lua 5%.4", lua)
      local out = run("-v").out
      assert.are.equal(lua, out:sub(-#lua))
      assert.matches("^cfut %d+%.%d+%.%d+  $", out:sub(1, -#lua - 1))
    end)

    it("prints the version of src/cfut.h", function ()
      local root = os.getenv("CFUT_ROOT")
      local h = root and readfile(root .. "/src/cfut.h")
      assert.is_string(h,
                       "CFUT_ROOT/src/cfut.h not readable (make spec sets it)")
      local v = h:match('#define CFUT_VERSION "([^"]+)"')
      assert.are.equal(v .. "  Lua ", run("-v").out:sub(1, #v + 6))
    end)

    it("runs the script after printing the version", function ()
      local rv = run("-v " .. q(tmpfile("print('ran')")))
      assert.matches("^cfut [^\n]+\nran\n$", rv.out)
    end)
  end)

  describe("option -e", function ()
    it("runs each statement in order", function ()
      local r = run("-e 'x = 6' -e 'print(x * 7)'")
      assert.are.equal(0, r.code)
      assert.are.equal("42\n", r.out)
    end)

    it("accepts the statement attached to the option", function ()
      assert.are.equal("attached\n", run("'-eprint(\"attached\")'").out)
    end)

    it("reports an error with the chunk name (command line)", function ()
      local r = run("-e 'error(\"bad\")'")
      assert.are.equal(1, r.code)
      assert.matches(ERR .. "%(command line%):1: bad\nstack traceback:\n",
                     r.err)
    end)

    it("stops at the first failing option", function ()
      local r = run("-e 'error(\"first\")' -e 'print(\"second\")'")
      assert.are.equal(1, r.code)
      assert.are.equal("", r.out)
    end)

    it("needs an argument", function ()
      local r = run("-e")
      assert.are.equal(1, r.code)
      assert.matches(ERR .. "'%-e' needs argument\nusage: " .. PROG ..
                     " %[options%] %[script %[args%]%]\n", r.err)
    end)
  end)

  describe("option -l", function ()
    local moddir = tmp .. "/mods"
    os.execute("mkdir -p " .. q(moddir))
    writefile(moddir .. "/hostmod.lua",
              "print('loading hostmod') return { answer = 42 }")
    local env = "LUA_PATH=" .. q(moddir .. "/?.lua;;")

    it("sets the global of the module's name to require(mod)", function ()
      local r = run("-l hostmod -e 'print(hostmod.answer)'", { env = env })
      assert.are.equal(0, r.code)
      assert.are.equal("loading hostmod\n42\n", r.out)
    end)

    it("sets global g with -l g=mod", function ()
      local r = run("-l h=hostmod -e 'print(h.answer, hostmod)'",
                    { env = env })
      assert.are.equal("loading hostmod\n42\tnil\n", r.out)
    end)

    it("loads built-in libraries", function ()
      local r = run("-l s=string -e 'print(s == string)'")
      assert.are.equal("true\n", r.out)
    end)

    it("loads the cfut module", function ()
      local r = run("-lcfut -e 'print(type(cfut.thread_pool))'")
      assert.are.equal("function\n", r.out)
    end)

    it("fails with status 1 when the module is missing", function ()
      local r = run("-l no_such_mod_xyz -e 'print(1)'")
      assert.are.equal(1, r.code)
      assert.are.equal("", r.out)
      assert.matches(ERR .. "module 'no_such_mod_xyz' not found", r.err)
    end)

    it("needs an argument", function ()
      local r = run("-l -e 'print(1)'")
      assert.are.equal(1, r.code)
      assert.matches(ERR .. "'%-l' needs argument\n", r.err)
    end)
  end)

  describe("option -W", function ()
    it("turns warnings on", function ()
      local r = run("-W -e 'warn(\"careful\")'")
      assert.are.equal("Lua warning: careful\n", r.err)
    end)

    it("leaves warnings off without it", function ()
      assert.are.equal("", run("-e 'warn(\"careful\")'").err)
    end)

    it("obeys @on and @off, and prints a message in pieces as one line",
       function ()
      local r = run("-e 'warn(\"@on\") warn(\"a \", \"b\") warn(\"@off\")"
                    .. " warn(\"hidden\")'")
      assert.are.equal("Lua warning: a b\n", r.err)
    end)

    it("gives thread workers warnings that are off until @on", function ()
      local r = script([[
        local futures = require "cfut"
        local ex <close> = futures.thread_pool(1)
        ex:submit(function ()
          warn("hidden"); warn("@on"); warn("shown")
        end):result()
      ]])
      assert.are.equal(0, r.code)
      assert.are.equal("Lua warning: shown\n", r.err)
    end)
  end)

  describe("warn", function ()
    -- What 'prog' writes on stderr for the statements 'code'.
    local function warnings (prog, code)
      local err = tmp .. "/warn.err"
      os.execute("env -u LUA_INIT -u LUA_INIT_5_4 timeout 30 " .. prog ..
                 " -e " .. q(code) .. " 2>" .. q(err))
      return readfile(err)
    end

    it("treats control messages and pieces as lua5.4 does", function ()
      for _, code in ipairs{
        'warn("@on") warn("a", "b") warn("@off") warn("x")',
        'warn("@on", "x") warn("@on") warn("y")',
        'warn("a", "@on") warn("z")',
        'warn("@on") warn("p", "@off") warn("q")',
        'warn("@on") warn("@foo") warn("r")',
        'warn("@on") warn("@off", "s") warn("t")',
        'warn("@on") warn("u", "v", "@on") warn("@off") warn("w")',
      } do
        local want = warnings("lua5.4", code)
        assert.is_string(want)
        assert.are.equal(want, warnings(q(BIN), code), code)
      end
    end)
  end)

  describe("argv[0]", function ()
    -- stderr of BIN started by the shell words 'how' and -e 'stat'.
    local function errof (how, stat)
      local err = tmp .. "/argv0.err"
      os.execute("env -u LUA_INIT -u LUA_INIT_5_4 timeout 30 bash -c " ..
                 q(how .. " -e " .. q(stat)) .. " 2>" .. q(err))
      return readfile(err)
    end

    it("prefixes error messages, as lua.c does", function ()
      assert.matches("^/some/name: %(command line%):1: boom\n",
                     errof("exec -a /some/name " .. q(BIN), "error('boom')"))
      local dir = BIN:match("^(.*)/")
      assert.matches("^cfut: %(command line%):1: boom\n",
                     errof("PATH=" .. q(dir) .. ":$PATH; exec cfut",
                           "error('boom')"))
    end)

    it("prefixes the usage", function ()
      local err = errof("exec -a other " .. q(BIN) .. " -x", "")
      assert.matches("^other: unrecognized option '%-x'\n" ..
                     "usage: other %[options%]", err)
    end)

    it("is cfut when empty", function ()
      assert.matches("^cfut: %(command line%):1: boom\n",
                     errof("exec -a '' " .. q(BIN), "error('boom')"))
    end)
  end)

  describe("bad options", function ()
    it("print the usage and exit with status 1", function ()
      local r = run("-x")
      assert.are.equal(1, r.code)
      assert.matches(ERR .. "unrecognized option '%-x'\nusage: " .. PROG ..
                     " ", r.err)
      assert.are.equal("", r.out)
    end)

    it("include options with extra characters", function ()
      assert.matches(ERR .. "unrecognized option '%-vx'", run("-vx").err)
      assert.matches(ERR .. "unrecognized option '%-%-x'", run("--x").err)
    end)
  end)

  describe("the arg table", function ()
    local show = [[
      local keys = {}
      for k in pairs(arg) do keys[#keys + 1] = k end
      table.sort(keys)
      for _, k in ipairs(keys) do print(k, arg[k]) end
      print("...", select("#", ...), ...)
    ]]

    it("holds the script at 0, its arguments above, options below",
       function ()
      local path = tmpfile(show)
      local r = run("-W " .. q(path) .. " a 'b c'")
      assert.are.equal(0, r.code)
      assert.are.equal(table.concat({
        "-2\t" .. BIN, "-1\t-W", "0\t" .. path, "1\ta", "2\tb c",
        "...\t2\ta\tb c", "" }, "\n"), r.out)
    end)

    it("holds the program and options from 0 up without a script",
       function ()
      local r = run("-e 'for i = 0, #arg do print(i, arg[i]) end'")
      assert.are.equal("0\t" .. BIN .. "\n1\t-e\n2\t" ..
                       "for i = 0, #arg do print(i, arg[i]) end\n", r.out)
    end)

    it("stops options at --", function ()
      local dir = tmp .. "/dash"
      os.execute("mkdir -p " .. q(dir))
      writefile(dir .. "/-odd.lua", "print('odd', arg[0], ...)")
      local r = run("-- -odd.lua -v", { cwd = dir })
      assert.are.equal(0, r.code)
      assert.are.equal("odd\t-odd.lua\t-v\n", r.out)
    end)
  end)

  describe("script -", function ()
    it("runs stdin as the script with its arguments", function ()
      local r = run("- x y", { stdin = "print(arg[0], ...)" })
      assert.are.equal(0, r.code)
      assert.are.equal("-\tx\ty\n", r.out)
    end)

    it("is the default when stdin is not a terminal", function ()
      local r = run("", { stdin = "print('from stdin')" })
      assert.are.equal("from stdin\n", r.out)
    end)

    it("exits with status 1 on an error in stdin", function ()
      local r = run("", { stdin = "error('in stdin')" })
      assert.are.equal(1, r.code)
      assert.matches(ERR .. "stdin:1: in stdin\n", r.err)
    end)
  end)

  describe("a #! script", function ()
    it("runs directly with its arguments", function ()
      local path = tmpfile("#!" .. BIN .. "\nprint('shebang', ...)\n")
      assert(os.execute("chmod +x " .. q(path)))
      local _, _, code = os.execute("env -u LUA_INIT -u LUA_INIT_5_4 " ..
        "timeout 30 " .. q(path) .. " 1 2 >" .. q(tmp .. "/sb.out"))
      assert.are.equal(0, code)
      assert.are.equal("shebang\t1\t2\n", readfile(tmp .. "/sb.out"))
    end)

    it("keeps line numbers after the #! line", function ()
      local r = script("#!/usr/bin/env cfut\nerror('line two')\n")
      assert.matches(":2: line two\n", r.err)
    end)
  end)

  describe("LUA_INIT", function ()
    it("runs before the options", function ()
      local r = run("-e 'print(x)'", { env = "LUA_INIT='x = \"init\"'" })
      assert.are.equal("init\n", r.out)
    end)

    it("runs a file given as @file", function ()
      local f = tmpfile("print('init file')")
      local r = run("-e 'print(1)'", { env = "LUA_INIT=@" .. q(f) })
      assert.are.equal("init file\n1\n", r.out)
    end)

    it("gives way to LUA_INIT_5_4", function ()
      local r = run("-e ''", {
        env = "LUA_INIT='print(1)' LUA_INIT_5_4='print(54)'" })
      assert.are.equal("54\n", r.out)
    end)

    it("fails the run when it raises", function ()
      local r = run("-e 'print(1)'", { env = "LUA_INIT='error(\"init\")'" })
      assert.are.equal(1, r.code)
      assert.are.equal("", r.out)
      assert.matches(ERR .. "LUA_INIT:1: init\n", r.err)
    end)
  end)

  describe("option -E", function ()
    it("ignores LUA_INIT and LUA_INIT_5_4", function ()
      local r = run("-E -e 'print(2)'", {
        env = "LUA_INIT='print(1)' LUA_INIT_5_4='print(54)'" })
      assert.are.equal("2\n", r.out)
    end)

    it("ignores LUA_PATH and LUA_CPATH", function ()
      local r = run("-E -e 'print(package.path) print(package.cpath)'",
                    { env = "LUA_PATH=/nowhere/?.lua LUA_CPATH=/nowhere/?.so" })
      assert.are.equal(0, r.code)
      assert.is_nil(r.out:find("/nowhere", 1, true))
    end)
  end)

  describe("require 'cfut'", function ()
    it("uses the built-in module from package.preload", function ()
      local r = run("-e 'local m = require \"cfut\" " ..
                    "print(package.preload.cfut ~= nil, " ..
                    "m == package.loaded.cfut)'",
                    { env = "LUA_CPATH=/nowhere/?.so" })
      assert.are.equal("true\ttrue\n", r.out)
    end)

    -- package.path or cpath as 'prog' prints it under the shell
    -- assignments 'env'.
    local function pathof (prog, field, env)
      local out = tmp .. "/path.out"
      os.execute("env -u LUA_PATH -u LUA_PATH_5_4 -u LUA_CPATH " ..
                 "-u LUA_CPATH_5_4 " .. env .. " timeout 30 " .. prog ..
                 " -e 'print(package." .. field .. ")' >" .. q(out))
      return readfile(out)
    end

    it("leaves package.path and cpath as lua5.4 makes them", function ()
      assert.are.equal("x\n", pathof(q(BIN), "path", "LUA_PATH=x"))
      for _, case in ipairs{
        { "path", "" }, { "cpath", "" }, { "path", "LUA_PATH=x" },
        { "path", "LUA_PATH='a/?.lua;;'" },
        { "path", "LUA_PATH=x LUA_PATH_5_4='y/?.lua;;z'" },
        { "cpath", "LUA_CPATH='c/?.so;;'" },
        { "cpath", "LUA_CPATH=c LUA_CPATH_5_4=d" },
      } do
        local want = pathof("lua5.4", case[1], case[2])
        assert.is_string(want)
        assert.are.equal(want, pathof(q(BIN), case[1], case[2]),
                         case[1] .. " with " .. case[2])
      end
    end)

    -- A directory on LUA_PATH whose cfut/*.lua files fail when loaded.
    local decoys = tmp .. "/decoys"
    assert(os.execute("mkdir -p " .. q(decoys .. "/cfut")))
    for _, name in ipairs{ "errors", "iter" } do
      writefile(decoys .. "/cfut/" .. name .. ".lua",
                "error('the user path was searched')")
    end
    local useall = [[
      local futures = require "cfut"
      local tp <close> = futures.thread_pool(1)
      local pp <close> = futures.process_pool(1)
      local function f (x)
        return tostring(require("cfut").TimeoutError(x))
      end
      for _, ex in ipairs{ tp, pp } do
        for _, v in ex:map(f, { "a" }) do io.write(v, " ") end
      end
      print(tostring(futures.CancelledError("m")))
    ]]
    local want = "TimeoutError: a TimeoutError: a CancelledError: m\n"

    it("loads its Lua parts without the user's paths, in workers too",
       function ()
      -- A copy of the program alone in a directory: no lua/ next to it.
      local dir = tmp .. "/alone"
      assert(os.execute("mkdir -p " .. q(dir) .. " && cp " .. q(BIN) ..
                        " " .. q(dir .. "/cfut")))
      local path = "LUA_PATH=" .. q(decoys .. "/?.lua")
      local r = script(useall, "", { env = path })
      assert.are.equal(0, r.code, r.err)
      assert.are.equal(want, r.out)
      local out, err = tmp .. "/alone.out", tmp .. "/alone.err"
      local _, _, code = os.execute("cd / && env -u LUA_INIT " .. path ..
        " timeout 30 " .. q(dir .. "/cfut") .. " " .. q(tmpfile(useall)) ..
        " >" .. q(out) .. " 2>" .. q(err))
      assert.are.equal(0, code, readfile(err))
      assert.are.equal(want, readfile(out))
    end)

    -- The stock interpreter: a sanitized cfut.so needs the sanitizer's
    -- runtime preloaded (into lua5.4 only: sh and timeout crash with TSan's).
    local function stocklua ()
      if os.getenv("CFUT_SANITIZED") ~= "1" then return "lua5.4" end
      local lib = BIN:find("tsan", 1, true) and "libtsan.so" or "libasan.so"
      local f = assert(io.popen("gcc -print-file-name=" .. lib))
      local path = f:read("l")
      f:close()
      return "sh -c " .. q("LD_PRELOAD=" .. q(path) .. ' exec lua5.4 "$@"') ..
             " lua5.4"
    end

    it("gives the stock lua5.4 a module that needs only cpath", function ()
      local out, err = tmp .. "/stock.out", tmp .. "/stock.err"
      local _, _, code = os.execute("cd / && env -u LUA_INIT " ..
        "-u LUA_INIT_5_4 -u LUA_PATH_5_4 -u LUA_CPATH_5_4 LUA_PATH=" ..
        q(decoys .. "/?.lua") .. " LUA_CPATH=" ..
        q(BIN:match("^(.*)/") .. "/?.so") .. " timeout 30 " .. stocklua() ..
        " " .. q(tmpfile(useall)) .. " >" .. q(out) .. " 2>" .. q(err))
      assert.are.equal(0, code, readfile(err))
      assert.are.equal(want, readfile(out))
    end)
  end)

  describe("uncaught errors", function ()
    it("print argv[0]: and a traceback, exit with status 1", function ()
      local r = script("local function f () error('oops') end\nf()\n")
      assert.are.equal(1, r.code)
      assert.matches(ERR .. "[^\n]*:1: oops\nstack traceback:\n", r.err)
      assert.matches("in local 'f'", r.err)
      assert.is_nil(r.err:find("worker traceback", 1, true))
    end)

    it("honour __tostring of an error object", function ()
      local r = script("error(setmetatable({}, { __tostring = " ..
                       "function () return 'custom error' end }))")
      assert.are.equal(1, r.code)
      assert.matches(ERR .. "custom error\nstack traceback:\n", r.err)
    end)

    it("name the type of other error objects", function ()
      local r = script("error({})")
      assert.are.equal(1, r.code)
      assert.matches(ERR .. "%(error object is a table value%)\n", r.err)
    end)

    it("include syntax errors in the script", function ()
      local r = script("x = = 1")
      assert.are.equal(1, r.code)
      assert.matches(ERR .. "[^\n]*:1: unexpected symbol near '='", r.err)
    end)

    it("include a missing script", function ()
      local r = run(q(tmp .. "/missing.lua"))
      assert.are.equal(1, r.code)
      assert.matches(ERR .. "cannot open [^\n]*missing%.lua", r.err)
    end)

    it("of a task re-raised by result() add the worker traceback",
       function ()
      local r = script('local f=require"cfut"; local ex=f.thread_pool(1); ' ..
                       'ex:submit(function() error("boom") end):result()')
      assert.are.equal(1, r.code)
      local main, worker = r.err:match(
        "^(" .. PROG .. ": [^\n]*%.lua:1: boom\nstack traceback:\n.-)\n" ..
        "worker traceback %(the error was raised in a worker%):\n(.*)$")
      assert.is_truthy(main, r.err)
      assert.matches("in main chunk", main)
      assert.matches("%.lua:1:", worker)
    end)

    it("of a task caught, then another error, have no worker traceback",
       function ()
      local r = script([[
        local f = require "cfut"
        local ex = f.thread_pool(1)
        local fut = ex:submit(function () error("boom") end)
        assert(not pcall(fut.result, fut))
        error("other")]])
      assert.are.equal(1, r.code)
      assert.matches(ERR .. "[^\n]*:5: other\n", r.err)
      assert.is_nil(r.err:find("worker traceback", 1, true))
    end)
  end)

  describe("the end of the script", function ()
    it("waits for the tasks still running and exits with 0", function ()
      local r = script([[
        local futures = require "cfut"
        local ex = futures.thread_pool(2)
        for i = 1, 4 do
          ex:submit(function () futures.sleep(0.2) print("task " .. i) end)
        end
        print("main done")]])
      assert.are.equal(0, r.code)
      assert.are.equal("", r.err)
      for i = 1, 4 do assert.matches("task " .. i .. "\n", r.out) end
      assert.matches("main done\n", r.out)
    end)

    it("runs the done-callbacks still pending", function ()
      local r = script([[
        local futures = require "cfut"
        local ex = futures.thread_pool(1)
        local f = ex:submit(function () futures.sleep(0.2) return 42 end)
        f:add_done_callback(function (g) print("callback", g:result()) end)
        print("main done")]])
      assert.are.equal(0, r.code)
      assert.are.equal("main done\ncallback\t42\n", r.out)
    end)

    -- Issue 11 §2: after an uncaught error the end no longer waits for
    -- running tasks: they are stopped (the task never prints).
    it("also comes after an error, which stops running tasks and sets status 1",
       function ()
      local r = script([[
        local futures = require "cfut"
        local ex = futures.thread_pool(1)
        ex:submit(function () futures.sleep(0.2) print("task done") end)
        error("main failed")]])
      assert.are.equal(1, r.code)
      assert.are.equal("", r.out)
      assert.matches(ERR .. "[^\n]*main failed\n", r.err)
    end)

    it("comes after -e when there is no script", function ()
      local r = run("-e 'local futures = require \"cfut\" " ..
                    "futures.thread_pool(1):submit(function () " ..
                    "futures.sleep(0.2) print(\"late\") end)'")
      assert.are.equal(0, r.code)
      assert.are.equal("late\n", r.out)
    end)
  end)

  -- The loops allocate: ThreadSanitizer runs a signal
  -- handler only when the thread next calls into libc (malloc here).
  describe("Ctrl-C", function ()
    -- Interrupt a spawned script once it has printed "ready"; return its
    -- status, the seconds it took to exit, and its stderr.
    local function interrupt (src)
      local p = spawn(src)
      assert.is_true(wait_for(function () return printed(p, "ready") end, 10),
                     "the script did not start")
      local t0 = now()
      signal(p, "INT")
      local code = wait_for(function () return status(p) end, 10)
      return code, now() - t0, readfile(p.err)
    end

    it("interrupts a wait on a running task with exit status 1", function ()
      local code, took, err = interrupt([[
        local futures = require "cfut"
        local ex = futures.thread_pool(1)
        local f = ex:submit(function () futures.sleep(30) end)
        print("ready") io.stdout:flush()
        f:result()]])
      assert.are.equal(1, code)
      assert.is_true(took < 2, "took " .. took .. " s")
      assert.matches(ERR .. "[^\n]*:5: interrupted!\nstack traceback:\n", err)
    end)

    it("reports the interruption once and cancels queued tasks", function ()
      local p = spawn([[
        local futures = require "cfut"
        local ex = futures.thread_pool(1)
        local f = ex:submit(function () futures.sleep(30) end)
        ex:submit(function () print("queued task ran") end)
        print("ready") io.stdout:flush()
        f:result()]])
      assert.is_true(wait_for(function () return printed(p, "ready") end, 10))
      signal(p, "INT")
      assert.are.equal(1, wait_for(function () return status(p) end, 10))
      assert.are.equal("ready\n", readfile(p.out))
      local _, reports = readfile(p.err):gsub("interrupted!", "")
      assert.are.equal(1, reports, readfile(p.err))
    end)

    it("interrupts tasks running while the main script runs Lua code",
       function ()
      local code, took, err = interrupt([[
        local futures = require "cfut"
        local ex = futures.thread_pool(2)
        ex:submit(function () futures.sleep(30) end)
        ex:submit(function () while true do local _ = {} end end)
        print("ready") io.stdout:flush()
        while true do local _ = {} end]])
      assert.are.equal(1, code)
      assert.is_true(took < 2, "took " .. took .. " s")
      assert.matches(ERR .. "[^\n]*interrupted!\n", err)
    end)

    it("interrupts futures.sleep in the main script", function ()
      local code, took, err = interrupt([[
        local futures = require "cfut"
        print("ready") io.stdout:flush()
        futures.sleep(30)]])
      assert.are.equal(1, code)
      assert.is_true(took < 2, "took " .. took .. " s")
      assert.matches(ERR .. "[^\n]*interrupted!\n", err)
    end)

    it("interrupts a loop of Lua code", function ()
      local code, took, err = interrupt([[
        print("ready") io.stdout:flush()
        while true do local _ = {} end]])
      assert.are.equal(1, code)
      assert.is_true(took < 2, "took " .. took .. " s")
      assert.matches(ERR .. "[^\n]*interrupted!\n", err)
    end)

    it("a second time ends the process at once", function ()
      local p = spawn([[
        print("ready") io.stdout:flush()
        while true do
          local ok, err = pcall(function ()
            while true do local _ = {} end
          end)
          print("caught " .. tostring(err)) io.stdout:flush()
        end]])
      assert.is_true(wait_for(function () return printed(p, "ready") end, 10))
      signal(p, "INT")
      assert.is_true(wait_for(function () return printed(p, "caught") end, 10))
      assert.matches("caught [^\n]*interrupted!", readfile(p.out))
      local t0 = now()
      signal(p, "INT")
      local code = wait_for(function () return status(p) end, 10)
      assert.are.equal(128 + 2, code)  -- killed by SIGINT
      assert.is_true(now() - t0 < 2)
    end)
  end)

  describe("option -i", function ()
    local function repl (input)
      return run("-i", { stdin = input })
    end

    -- Built with GNU readline (as lua5.4 is), the REPL echoes each line it
    -- reads after the prompt, from a file too, as lua5.4 -i does.
    local f = assert(io.popen("ldd " .. q(BIN) .. " 2>/dev/null"))
    local readline = f:read("a"):find("libreadline", 1, true) ~= nil
    f:close()
    local function echo (line)
      return readline and line .. "\n" or ""
    end

    -- The output after the version line.
    local function transcript (out)
      return (out:gsub("^[^\n]*\n", "", 1))
    end

    it("prints the version, then prompts until the end of input", function ()
      local r = repl("")
      assert.are.equal(0, r.code)
      assert.matches("^cfut [^\n]+\n> \n$", r.out)
    end)

    it("prints the values of expressions", function ()
      local r = repl("1 + 1\n'a', nil, 3\n")
      assert.are.equal("> " .. echo("1 + 1") .. "2\n> " ..
                       echo("'a', nil, 3") .. "a\tnil\t3\n> \n",
                       transcript(r.out))
    end)

    it("prints =expr", function ()
      assert.are.equal("> " .. echo("=10") .. "10\n> \n",
                       transcript(repl("=10\n").out))
    end)

    it("keeps globals between lines and prints nothing for statements",
       function ()
      local r = repl("x = 5\nx\n")
      assert.are.equal("> " .. echo("x = 5") .. "> " .. echo("x") ..
                       "5\n> \n", transcript(r.out))
    end)

    it("continues an incomplete chunk with the >> prompt", function ()
      local r = repl("function f ()\nreturn 7\nend\nf()\n")
      assert.are.equal("> " .. echo("function f ()") .. ">> " ..
                       echo("return 7") .. ">> " .. echo("end") .. "> " ..
                       echo("f()") .. "7\n> \n", transcript(r.out))
    end)

    it("reports an error and goes on", function ()
      local r = repl("error('oops')\nprint('after')\n")
      assert.are.equal(0, r.code)
      assert.matches("^stdin:1: oops\nstack traceback:\n", r.err)
      assert.are.equal("> " .. echo("error('oops')") .. "> " ..
                       echo("print('after')") .. "after\n> \n",
                       transcript(r.out))
    end)

    it("reports an incomplete chunk at the end of input", function ()
      local r = repl("print(1,\n")
      assert.matches("^stdin:1: unexpected symbol near <eof>", r.err)
    end)

    it("uses _PROMPT and _PROMPT2", function ()
      local set = "_PROMPT = 'P: ' _PROMPT2 = 'P2: '"
      local r = repl(set .. "\nif true then\nend\n")
      assert.are.equal("> " .. echo(set) .. "P: " .. echo("if true then") ..
                       "P2: " .. echo("end") .. "P: \n", transcript(r.out))
    end)

    it("shows a _PROMPT that is not a string through tostring", function ()
      local set = "_PROMPT = setmetatable({}, { __tostring = function () " ..
                  "return 'T> ' end }) _PROMPT2 = 42"
      local r = repl(set .. "\nx = 1 +\n2\nx\n")
      assert.are.equal("> " .. echo(set) .. "T> " .. echo("x = 1 +") ..
                       "42" .. echo("2") .. "T> " .. echo("x") .. "3\nT> \n",
                       transcript(r.out))
    end)

    it("goes on after Ctrl-C interrupts a line", function ()
      local last = "require 'cfut'.sleep(0.01) print('after')"
      -- the echo of the line must not look like its output: 'ready' is
      -- printed as 're' .. 'ady', or the wait could end before the line
      -- runs and the signal land in require
      local input = tmpfile("require 'cfut'.sleep(0.01) print('re' .. 'ady') " ..
                            "io.stdout:flush() require 'cfut'.sleep(30)\n" ..
                            last .. "\n")
      local p = spawn_run("-i", input)
      assert.is_true(wait_for(function () return printed(p, "ready") end, 10))
      signal(p, "INT")
      assert.are.equal(0, wait_for(function () return status(p) end, 10))
      assert.is_true(has(readfile(p.out), "\n> " .. echo(last) .. "after\n"),
                     readfile(p.out))
      assert.matches("^stdin:1: interrupted!\n", readfile(p.err))
    end)

    it("runs after the script", function ()
      local r = run("-i " .. q(tmpfile("y = 'from script'")),
                    { stdin = "y\n" })
      assert.are.equal("> " .. echo("y") .. "from script\n> \n",
                       transcript(r.out))
    end)
  end)

  describe("no arguments on a terminal", function ()
    it("starts the interactive prompt", function ()
      local py = tmpfile([==[
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1]])
out = b""
# Read until 'what' has come 'count' times, at most 'limit' seconds.
def readuntil(what, count=1, limit=10):
    global out
    end = time.time() + limit
    while out.count(what) < count and time.time() < end:
        if not select.select([fd], [], [], max(0, end - time.time()))[0]:
            break
        try:
            data = os.read(fd, 1024)
        except OSError:
            break
        if not data:
            break
        out += data
readuntil(b"> ")
os.write(fd, b"print(6 * 7)\n")
readuntil(b"42")
# The next prompt: the terminal is set for the line (readline) by then.
readuntil(b"> ", 2)
os.write(fd, b"\x04")
readuntil(b"never", 1, 5)
os.waitpid(pid, 0)
sys.stdout.write(out.decode())
]==], "ptyrun.py")
      local outf = tmp .. "/tty.out"
      local ok = os.execute("env -u LUA_INIT -u LUA_INIT_5_4 timeout 30 " ..
        "python3 " .. q(py) .. " " .. q(BIN) .. " >" .. q(outf))
      assert.is_true(ok and true or false,
                     "python3 with pty failed (make setup installs python3)")
      local out = readfile(outf)
      assert.matches("^cfut %d+%.%d+%.%d+  Lua 5%.4", out)
      -- (readline may add terminal control sequences around its lines.)
      assert.matches("\n[^\n]*> print%(6 %* 7%)\r?\n[^\n]*42\r?\n[^\n]*> ",
                     out)
    end)
  end)
end)
