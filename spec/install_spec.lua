-- spec/install_spec.lua: `make install` and `make uninstall` (the layout
-- that lets `cfut script.lua` and `lua5.4 -e 'require "cfut"'` work from any
-- directory).

local shell = require "shell"
local exists = shell.exists
local helpers = require "helpers"

local root = os.getenv("CFUT_ROOT")

after_each(helpers.cleanup)

-- make exports its command-line variables: a sanitizer run (make asan
-- runs the specs with OUT=build-asan in the environment) must not make
-- the install relink the sanitized build under test with plain objects.
local MAKEENV = "env -u OUT -u B -u OPT -u EXTRA_CFLAGS -u EXTRA_LDFLAGS " ..
                "-u MAKEFLAGS -u MAKEOVERRIDES -u MFLAGS -u MAKELEVEL "

local function sh (cmd)
  local ok, how, code = os.execute(MAKEENV .. cmd .. " >/dev/null 2>&1")
  return ok and true or false, how, code
end

describe("make install", function ()

  local dest, prefix

  before_each(function ()
    dest = helpers.tmpdir()
    prefix = dest .. "/opt/cf"
    assert.is_true(sh(("make -C %q install PREFIX=/opt/cf DESTDIR=%q")
                      :format(root, dest)))
  end)

  -- (The module's Lua parts are compiled into cfut and cfut.so.)
  it("installs the host, the module and the manual page", function ()
    assert.is_true(exists(prefix .. "/bin/cfut"))
    assert.is_true(exists(prefix .. "/lib/lua/5.4/cfut.so"))
    assert.is_true(exists(prefix .. "/share/man/man1/cfut.1"))
    assert.is_false(exists(prefix .. "/share/lua/5.4/cfut/errors.lua"))
  end)

  it("gives a manual page that man finds under the prefix", function ()
    local f = assert(io.popen(("env MANWIDTH=80 MANPAGER=cat man -M %q " ..
                               "cfut 2>&1"):format(prefix .. "/share/man")))
    local page = f:read("a")
    f:close()
    assert.matches("^CFUT%(1%)", page)
  end)

  it("gives a cfut that runs pools from any directory", function ()
    local r = helpers.run([[
      local futures = require "cfut"
      local ex <close> = futures.thread_pool(1)
      local px <close> = futures.process_pool(1)
      print(ex:submit(function (x) return x + 1 end, 1):result(30),
            px:submit(function (x) return x * 2 end, 21):result(30))
    ]], { prog = prefix .. "/bin/cfut", cwd = dest,
          env = { LUA_PATH = ";;", LUA_CPATH = ";;" } })
    assert.equal(0, r.status, r.stderr)
    assert.equal("2\t42\n", r.stdout)
  end)

  -- (make install installs the plain build, even in a sanitizer run, so
  -- the stock interpreter can load it.)
  it("gives a module the stock lua5.4 loads from its install paths",
     function ()
    local r = helpers.run([[
      local futures = require "cfut"
      local ex <close> = futures.process_pool(1)
      print(ex:submit(futures.getpid):result(30) ~= futures.getpid())
    ]], { prog = "lua5.4", cwd = dest,
          env = { LUA_PATH = ";;",
                  LUA_CPATH = prefix .. "/lib/lua/5.4/?.so;;" } })
    assert.equal(0, r.status, r.stderr)
    assert.equal("true\n", r.stdout)
  end)

  it("is undone by make uninstall", function ()
    assert.is_true(sh(("make -C %q uninstall PREFIX=/opt/cf DESTDIR=%q")
                      :format(root, dest)))
    assert.is_false(exists(prefix .. "/bin/cfut"))
    assert.is_false(exists(prefix .. "/lib/lua/5.4/cfut.so"))
    assert.is_false(exists(prefix .. "/share/man/man1/cfut.1"))
  end)
end)

-- Every path under 'dir' (directories too), sorted, one a line.
local function tree (dir)
  local f = assert(io.popen(("cd %q && find . | sort"):format(dir)))
  local s = f:read("a")
  f:close()
  return s
end

describe("make uninstall", function ()

  local function make (target, dest, prefix)
    return sh(("make -C %q %s PREFIX=%q DESTDIR=%q")
              :format(root, target, prefix, dest))
  end

  it("removes the directories install made, once empty", function ()
    local dest = helpers.tmpdir()
    assert.is_true(make("install", dest, "/opt/cf"))
    assert.is_true(make("install", dest, "/opt/cf"))   -- twice: no harm
    assert.is_true(make("uninstall", dest, "/opt/cf"))
    assert.equal(".\n", tree(dest))
  end)

  it("leaves the directories that were there before", function ()
    local dest = helpers.tmpdir()
    assert.is_true(sh(("mkdir -p %q %q")
                      :format(dest .. "/usr/local/bin",
                              dest .. "/usr/local/share/man")))
    local before = tree(dest)
    assert.is_true(make("install", dest, "/usr/local"))
    assert.is_true(make("uninstall", dest, "/usr/local"))
    assert.equal(before, tree(dest))
  end)

  it("leaves a directory that is not empty", function ()
    local dest = helpers.tmpdir()
    assert.is_true(make("install", dest, "/opt/cf"))
    local mine = dest .. "/opt/cf/lib/lua/5.4/other.so"
    local f = assert(io.open(mine, "wb"))
    f:close()
    assert.is_true(make("uninstall", dest, "/opt/cf"))
    assert.is_true(exists(mine))
    assert.equal(table.concat({ ".", "./opt", "./opt/cf", "./opt/cf/lib",
      "./opt/cf/lib/lua", "./opt/cf/lib/lua/5.4",
      "./opt/cf/lib/lua/5.4/other.so", "" }, "\n"), tree(dest))
  end)
end)
