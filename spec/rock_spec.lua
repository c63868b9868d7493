-- spec/rock_spec.lua: cfut-scm-1.rockspec.  `luarocks make` in a copy of
-- the checkout (what a fresh clone holds) installs the module and the cfut
-- program into a tree, where they run a process pool from another
-- directory; a rock packed from that tree installs offline into another.
-- Needs luarocks (make setup-rocks; make test installs it).

local shell = require "shell"
local q, readfile, exists = shell.q, shell.readfile, shell.exists
local ROOT = assert(os.getenv("CFUT_ROOT"), "CFUT_ROOT is not set")

local tmp = shell.tmpdir(teardown)

local clone, tree = tmp .. "/clone", tmp .. "/tree"
local elsewhere = tmp .. "/elsewhere"

-- luarocks and the programs it installs run with a HOME of their own, no
-- LUA_* variables, and a proxy that refuses every connection (offline).
local ENV = "env -u LUA_INIT -u LUA_INIT_5_4 -u LUA_PATH -u LUA_PATH_5_4 " ..
            "-u LUA_CPATH -u LUA_CPATH_5_4 HOME=" .. q(tmp .. "/home") ..
            " http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9" ..
            " ftp_proxy=http://127.0.0.1:9 MAKEFLAGS=-j2 "

-- Run the shell command 'cmd' in directory 'dir'; returns
-- {code, out, err}.
local function sh (dir, cmd)
  local o, e = tmp .. "/out", tmp .. "/err"
  local _, _, code = os.execute("cd " .. q(dir) .. " && " .. ENV ..
    "timeout 300 " .. cmd .. " </dev/null >" .. q(o) .. " 2>" .. q(e))
  return { code = code, out = readfile(o), err = readfile(e) }
end

local function luarocks (dir, args)
  return sh(dir, "luarocks --lua-version 5.4 " .. args)
end

-- A script that runs a process pool of two workers (other processes)
-- and prints the results.
local POOL = [[
local futures = require "cfut"
local ex <close> = futures.process_pool(2)
local out = {}
for i, v, pid in ex:map(function (x) return x * x, futures.getpid() end,
                        { 1, 2, 3 }) do
  out[i] = v .. (pid ~= futures.getpid() and "" or " in the main process")
end
print(table.concat(out, " "))
]]

local function script ()
  local path = elsewhere .. "/pool.lua"
  local f = assert(io.open(path, "wb"))
  f:write(POOL)
  f:close()
  return path
end

-- env with the variables of `luarocks path` for tree 't'.
local function pathenv (t)
  local r = luarocks(elsewhere, "--tree " .. q(t) .. " path")
  assert.are.equal(0, r.code, r.err)
  local words = {}
  for name, value in r.out:gmatch("export (LUA_C?PATH)='([^']*)'") do
    words[#words + 1] = name .. "=" .. q(value)
  end
  assert.are.equal(2, #words, r.out)
  return "env " .. table.concat(words, " ")
end

describe("cfut-scm-1.rockspec", function ()

  setup(function ()
    assert(os.execute("command -v luarocks >/dev/null"),
           "luarocks is not installed: run make setup-rocks")
    assert(os.execute("mkdir -p " .. q(clone) .. " " .. q(elsewhere)))
    -- What a fresh clone would hold: the files git tracks or would add.
    local copy = "git -C " .. q(ROOT) .. " ls-files -co --exclude-standard" ..
                 " -z | xargs -0 cp --parents -t " .. q(clone)
    if not os.execute("git -C " .. q(ROOT) .. " rev-parse 2>/dev/null") then
      copy = "tar -C " .. q(ROOT) .. " --exclude='./build*' " ..
             "--exclude=./cfut --exclude=./cfut.so -cf - . | tar -C " ..
             q(clone) .. " -xf -"
    end
    assert(os.execute("cd " .. q(ROOT) .. " && " .. copy))
    local r = luarocks(clone, "make --tree " .. q(tree) ..
                              " cfut-scm-1.rockspec")
    assert.are.equal(0, r.code, (r.out or "") .. (r.err or ""))
  end)

  it("luarocks make installs the module and the cfut program", function ()
    assert.is_true(exists(tree .. "/lib/lua/5.4/cfut.so"))
    assert.is_true(exists(tree .. "/bin/cfut"))
    local r = luarocks(elsewhere, "--tree " .. q(tree) .. " list --porcelain")
    assert.matches("^cfut\tscm%-1\tinstalled\t", r.out)
  end)

  it("gives the stock lua5.4 a module that runs a process pool",
     function ()
    local r = sh(elsewhere, pathenv(tree) .. " lua5.4 " .. q(script()))
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("1 4 9\n", r.out)
  end)

  it("gives a cfut program that runs a process pool", function ()
    local r = sh(elsewhere, q(tree .. "/bin/cfut") .. " " .. q(script()))
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("1 4 9\n", r.out)
    r = sh(elsewhere, q(tree .. "/bin/cfut") .. " -v")
    assert.matches("^cfut %d+%.%d+%.%d+  Lua 5%.4", r.out)
  end)

  it("packs a rock that installs offline into another tree", function ()
    local packed = tmp .. "/packed"
    assert(os.execute("mkdir -p " .. q(packed)))
    local r = luarocks(packed, "--tree " .. q(tree) .. " pack cfut")
    assert.are.equal(0, r.code, r.err)
    local rock = r.out:match("Packed: ([^\n]+%.rock)")
    assert.is_string(rock, r.out)
    local other = tmp .. "/other"
    r = luarocks(elsewhere, "--tree " .. q(other) .. " install " .. q(rock))
    assert.are.equal(0, r.code, (r.out or "") .. (r.err or ""))
    r = sh(elsewhere, q(other .. "/bin/cfut") .. " " .. q(script()))
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("1 4 9\n", r.out)
    r = sh(elsewhere, pathenv(other) .. " lua5.4 " .. q(script()))
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("1 4 9\n", r.out)
  end)
end)
