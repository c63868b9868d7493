-- spec/install_spec.lua: `make install` and `make uninstall` (the layout
-- that lets `cfut script.lua` and `lua5.4 -e 'require "cfut"'` work from any
-- directory).

local helpers = require "helpers"

local root = os.getenv("CFUT_ROOT")

after_each(helpers.cleanup)

local function sh (cmd)
  local ok, how, code = os.execute(cmd .. " >/dev/null 2>&1")
  return ok and true or false, how, code
end

local function exists (path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

describe("make install", function ()

  local dest, prefix

  before_each(function ()
    dest = helpers.tmpdir()
    prefix = dest .. "/opt/cf"
    assert.is_true(sh(("make -C %q install PREFIX=/opt/cf DESTDIR=%q")
                      :format(root, dest)))
  end)

  it("installs the host, the module and the Lua files", function ()
    assert.is_true(exists(prefix .. "/bin/cfut"))
    assert.is_true(exists(prefix .. "/lib/lua/5.4/cfut.so"))
    assert.is_true(exists(prefix .. "/share/lua/5.4/cfut/errors.lua"))
    assert.is_true(exists(prefix .. "/share/lua/5.4/cfut/iter.lua"))
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
          env = { LUA_PATH = prefix .. "/share/lua/5.4/?.lua;;",
                  LUA_CPATH = prefix .. "/lib/lua/5.4/?.so;;" } })
    assert.equal(0, r.status, r.stderr)
    assert.equal("true\n", r.stdout)
  end)

  it("is undone by make uninstall", function ()
    assert.is_true(sh(("make -C %q uninstall PREFIX=/opt/cf DESTDIR=%q")
                      :format(root, dest)))
    assert.is_false(exists(prefix .. "/bin/cfut"))
    assert.is_false(exists(prefix .. "/lib/lua/5.4/cfut.so"))
    assert.is_false(exists(prefix .. "/share/lua/5.4/cfut/errors.lua"))
  end)
end)
