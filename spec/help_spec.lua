-- spec/help_spec.lua: `cfut -h`, `--help`, `--version` and the manual page
-- docs/cfut.1.

local shell = require "shell"
local q, readfile = shell.q, shell.readfile
local BIN = assert(os.getenv("CFUT_BIN"), "CFUT_BIN is not set")
local ROOT = assert(os.getenv("CFUT_ROOT"), "CFUT_ROOT is not set")

local tmp = os.tmpname()

-- Run the shell command 'cmd' (stdout and stderr to files); returns
-- {code, out, err}.
local function sh (cmd)
  local out, err = tmp .. ".out", tmp .. ".err"
  local _, _, code = os.execute("env -u LUA_INIT -u LUA_INIT_5_4 " ..
    "timeout 30 " .. cmd .. " </dev/null >" .. q(out) .. " 2>" .. q(err))
  local r = { code = code, out = readfile(out), err = readfile(err) }
  os.remove(out)
  os.remove(err)
  return r
end

-- lua.c's option lines ("  -e stat   execute string 'stat'"), from the
-- usage lua5.4 prints for a bad option.
local function luaoptions ()
  local r = sh("lua5.4 -x")
  local lines = {}
  for l in r.err:gmatch("[^\n]+") do
    if l:match("^  %-") then lines[#lines + 1] = l end
  end
  return lines
end

describe("cfut --help", function ()
  teardown(function () os.remove(tmp) end)

  for _, opt in ipairs{ "-h", "--help" } do
    it(opt .. " prints the usage on stdout and exits with 0", function ()
      local r = sh(q(BIN) .. " " .. opt)
      assert.are.equal(0, r.code)
      assert.are.equal("", r.err)
      assert.matches("^usage: " .. BIN:gsub("%p", "%%%0") ..
                     " %[options%] %[script %[args%]%]\n", r.out)
    end)
  end

  it("lists every option of lua.c, with lua.c's words", function ()
    local lines = luaoptions()
    assert.is_true(#lines >= 9, "lua5.4 -x printed no usage")
    local out = sh(q(BIN) .. " --help").out
    for _, l in ipairs(lines) do
      assert.is_truthy(out:find("\n" .. l .. "\n", 1, true), l)
    end
  end)

  it("lists what cfut adds", function ()
    local out = sh(q(BIN) .. " --help").out
    assert.matches("\n  %-h, %-%-help +show this help and exit\n", out)
    assert.matches("\n  %-%-version +show version information and exit\n",
                   out)
    assert.matches("cfut%(1%)", out)
  end)

  it("runs nothing else", function ()
    local r = sh(q(BIN) .. " -e 'print(1)' --help")
    assert.are.equal(0, r.code)
    assert.is_nil(r.out:find("^1\n"))
    assert.matches("^usage: ", r.out)
  end)

  it("is a script argument after the script", function ()
    local script = tmp .. ".lua"
    local f = assert(io.open(script, "wb"))
    f:write("print(...)")
    f:close()
    local r = sh(q(BIN) .. " " .. q(script) .. " --help -h")
    os.remove(script)
    assert.are.equal(0, r.code)
    assert.are.equal("--help\t-h\n", r.out)
  end)

  it("is not -hx or --helpx", function ()
    for _, opt in ipairs{ "-hx", "--helpx", "--versionx" } do
      local r = sh(q(BIN) .. " " .. opt)
      assert.are.equal(1, r.code)
      assert.matches(": unrecognized option '" .. opt:gsub("%p", "%%%0") ..
                     "'\nusage: ", r.err)
    end
  end)
end)

describe("cfut --version", function ()
  it("prints the line of -v and exits with 0, running nothing else",
     function ()
    local v = sh(q(BIN) .. " -v")
    local r = sh(q(BIN) .. " --version -e 'print(1)'")
    assert.are.equal(0, r.code)
    assert.are.equal("", r.err)
    assert.are.equal(v.out, r.out)
    assert.matches("^cfut %d+%.%d+%.%d+  Lua 5%.4%.%d+  Copyright %(C%) " ..
                   "1994%-%d+ Lua%.org, PUC%-Rio\n$", r.out)
  end)
end)

describe("the manual page docs/cfut.1", function ()
  local page = ROOT .. "/docs/cfut.1"
  local src = readfile(page)

  it("is roff for man(7) with the usual sections", function ()
    assert.is_string(src, page .. " is missing")
    assert.matches("\n%.TH CFUT 1 ", "\n" .. src)
    local at = 0
    for _, sec in ipairs{ "NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS",
                          "ENVIRONMENT", "EXIT STATUS", "SEE ALSO" } do
      local i = src:find("\n.SH " .. sec .. "\n", 1, true)
      assert.is_truthy(i, "no section " .. sec)
      assert.is_true(i > at, sec .. " out of order")
      at = i
    end
    assert.matches("\n%.SH NAME\ncfut \\%- ", src)
  end)

  it("documents every option of the help", function ()
    local out = sh(q(BIN) .. " --help").out
    for opt in out:gmatch("\n  (%-%-?%a+)") do
      -- In roff a '-' of an option is written '\-'.
      local roff = opt:gsub("%-", "\\-")
      assert.is_truthy(src:find(roff, 1, true), opt .. " not in cfut.1")
    end
  end)

  it("renders without warnings", function ()
    local r = sh("groff -man -Tutf8 -ww -z " .. q(page))
    assert.are.equal(0, r.code, "groff (groff-base) failed: " .. r.err)
    assert.are.equal("", r.err)
    r = sh("env MANWIDTH=80 MANPAGER=cat man -l " .. q(page))
    assert.are.equal(0, r.code, "man -l (man-db) failed: " .. r.err)
    assert.matches("^CFUT%(1%)", r.out)
    assert.matches("\nNAME\n +cfut %- Lua 5%.4 interpreter", r.out)
    assert.matches("\nOPTIONS\n", r.out)
    assert.matches("%-%-version", r.out)
  end)
end)
