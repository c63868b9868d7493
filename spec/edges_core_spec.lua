-- spec/edges_core_spec.lua: issue 8, the futures core at its edges:
-- done-callback order (defect 8), a pool made while `package` is not a
-- table (defect 10), the real reason a worker state cannot be set up
-- (defect 12), and a dead handle left in the future cache.

local futures = require "cfut"
local helpers = require "helpers"

local LONG = helpers.LONG
local errof, pool = helpers.errof, helpers.pool

after_each(helpers.cleanup)

-- A task that waits for 'gate' to open, then returns 'v'.
local function gated (gate, v)
  gate:result(LONG)
  return v
end

describe("done-callbacks (issue 8, defect 8)", function ()
  it("run in the order they were added, across the future finishing",
     function ()
    local ex = pool(1)
    local gate = helpers.gate()
    local f = ex:submit(gated, gate, 1)
    local order = {}
    f:add_done_callback(function () order[#order + 1] = "first" end)
    gate:set_result(true)
    -- Finished, but this state has not waited yet: "first" is still due.
    assert.truthy(helpers.spin_until(function () return f:done() end))
    f:add_done_callback(function () order[#order + 1] = "second" end)
    futures.poll()
    assert.same({ "first", "second" }, order)
  end)

  it("of a hand-made future finished by a worker keep their order too",
     function ()
    local ex = pool(1)
    local f = futures.future()
    local order = {}
    for i = 1, 3 do
      f:add_done_callback(function () order[#order + 1] = i end)
    end
    ex:submit(function (g) g:set_result("x") end, f):result(LONG)
    assert.truthy(helpers.spin_until(function () return f:done() end))
    f:add_done_callback(function () order[#order + 1] = 4 end)
    assert.equal("x", f:result(LONG))
    assert.same({ 1, 2, 3, 4 }, order)
  end)
end)

describe("done-callbacks added through a handle closed by hand", function ()
  it("never run for another future at the same address", function ()
    local ran = 0
    for i = 1, 20 do
      local old = futures.future()
      old:add_done_callback(function () ran = ran + 1 end)
      getmetatable(old).__gc(old)     -- its C future is freed here
      local new = futures.future()
      new:set_result(i)
      assert.equal(i, new:result(0))
    end
    assert.equal(0, ran)
  end)
end)

describe("pools made while `package` is not a table (issue 8, defect 10)",
         function ()
  -- Call fn with the global `package` set to v, then put it back.
  local function without_package (v, fn, ...)
    local saved = _G.package
    _G.package = v
    local r = table.pack(pcall(fn, ...))
    _G.package = saved
    return table.unpack(r, 1, r.n)
  end

  it("thread_pool{initializer = ...} keeps its options and runs it",
     function ()
    for _, v in ipairs({ false, 42 }) do
      local ok, ex = without_package(v, futures.thread_pool, {
        max_workers = 1,
        initializer = function (x) INITIALIZED = x end,
        initargs = { "yes" },
      })
      assert(ok, ex)
      helpers.track(ex)
      assert.equal("yes", ex:submit(function ()
        return INITIALIZED
      end):result(LONG))
    end
  end)

  it("thread_pool(n) works and leaves the caller's stack alone", function ()
    -- A frame with values under the call: popping below it would lose
    -- (or overwrite) them.
    local a, b, c = "a", "b", "c"
    local ok, ex = without_package(nil, futures.thread_pool, 3)
    assert(ok, ex)
    helpers.track(ex)
    assert.same({ "a", "b", "c" }, { a, b, c })
    assert.equal(6, ex:submit(function (x) return x * 2 end, 3):result(LONG))
  end)

  it("process_pool(n) works too", function ()
    local ok, ex = without_package(nil, futures.process_pool, 1)
    assert(ok, ex)
    helpers.track(ex)
    assert.equal(6, ex:submit(function (x) return x * 2 end, 3):result(LONG))
  end)
end)

describe("a worker state that cannot be set up (issue 8, defect 12)",
         function ()
  -- The module's Lua parts are compiled in (src/embed.sh), so the user's
  -- package.path can no longer stop a worker state from being set up:
  -- what used to fail there now works.  What is left that fails without
  -- a lack of memory is a process worker that cannot load cfut.so (the
  -- stock lua5.4 finds it through package.cpath); it must say so, not
  -- "not enough memory".  Running out of memory itself is the failalloc
  -- build's poolstart scenario.
  it("a thread pool's workers do not depend on package.path", function ()
    local saved = package.path
    package.path = "/nonexistent-cfut-dir/?.lua"
    local ok, ex = pcall(futures.thread_pool, 1)
    package.path = saved
    assert(ok, ex)
    helpers.track(ex)
    assert.equal(2, ex:submit(function () return 1 + 1 end):result(LONG))
  end)

  it("makes a process worker say the real reason on stderr", function ()
    local opts = assert(helpers.stock_lua())
    local r = helpers.run([[
      local futures = require "cfut"
      package.cpath = "/nonexistent-cfut-dir/?.so"
      local ex = futures.process_pool(1)
      local ok, e = pcall(function ()
        return ex:submit(function () return 1 end):result(20)
      end)
      print(ok, futures.is(e, futures.BrokenProcessPool))
    ]], opts)
    assert.equal(0, r.status, r.stderr)
    assert.equal("false\ttrue\n", r.stdout)
    assert.matches("module 'cfut' not found", r.stderr, 1, true)
    assert.matches("nonexistent-cfut-dir", r.stderr, 1, true)
    assert.not_matches("not enough memory", r.stderr, 1, true)
  end)
end)

describe("the future cache (issue 8)", function ()
  it("does not hand out a handle closed by a hand-called __gc", function ()
    local ex = pool(1)
    local old = futures.future()
    -- The worker keeps the only other reference to old's C future.
    ex:submit(function (f) KEPT = f end, old):result(LONG)
    getmetatable(old).__gc(old)
    -- The worker drops it (freed on the worker's thread), then makes new
    -- futures: the allocator is likely to give one of them old's address.
    local news = ex:submit(function ()
      KEPT = nil
      collectgarbage()
      collectgarbage()
      local t = {}
      for i = 1, 50 do t[i] = futures.future() end
      return t
    end):result(LONG)
    assert.equal(50, #news)
    for i, f in ipairs(news) do
      assert.is_false(rawequal(f, old), "future " .. i .. " is the old handle")
      assert.is_false(f:done())
      f:set_result(i)
      assert.equal(i, f:result(0))
    end
  end)
end)

describe("signal handlers (issue 8)", function ()
  -- The module as a shared object, as lua5.4 loads it.
  local function module_path ()
    return assert(package.searchpath("cfut", package.cpath),
                  "cfut.so not found on package.cpath")
  end

  -- The disassembly of the function 'name' in the shared object 'so'.
  local function disassemble (so, name)
    local p = assert(io.popen("objdump -d --no-show-raw-insn --disassemble="
                              .. name .. " '" .. so .. "' 2>&1"))
    local s = p:read("a")
    p:close()
    return s
  end

  it("read thread-local variables without __tls_get_addr", function ()
    -- In a dlopen'ed module the default TLS model reaches a variable
    -- through __tls_get_addr, which may call malloc on a thread's first
    -- access: not async-signal-safe.  The handlers run worker_sigint
    -- (SIGURG in thread workers, SIGINT in process workers).
    local so = module_path()
    local s = disassemble(so, "worker_sigint")
    assert.matches("<worker_sigint>:", s, 1, true)
    assert.not_matches("__tls_get_addr", s, 1, true)
    for _, handler in ipairs({ "onsignal", "onsigint" }) do
      assert.not_matches("__tls_get_addr", disassemble(so, handler), 1, true)
    end
  end)
end)

describe("the Lua heap (issue 8)", function ()
  -- A realloc that refuses every real shrink (to half the block or less),
  -- preloaded into the host: C allows realloc to fail there.
  local SHIM = [[
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stddef.h>
void *realloc (void *p, size_t n) {
  static void *(*real) (void *, size_t);
  if (real == NULL)
    real = (void *(*) (void *, size_t))dlsym(RTLD_NEXT, "realloc");
  if (p != NULL && n > 0 && n <= malloc_usable_size(p) / 2) return NULL;
  return real(p, n);
}
]]

  it("keeps a big block whose shrink the C library refuses", function ()
    -- Sanitizer builds give Lua the C library's allocator (and ASan must
    -- come first among the libraries): the slab heap is not in play.
    if helpers.sanitized then return end
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/shim.c", SHIM)
    assert(os.execute("cc -shared -fPIC -o '" .. dir .. "/shim.so' '"
                      .. dir .. "/shim.c' -ldl"), "cannot build the shim")
    -- A table's array part shrinks from 64 KiB to 2 KiB when it rehashes.
    local r = helpers.run([[
      local t = {}
      for i = 1, 4096 do t[i] = i end
      for i = 129, 4096 do t[i] = nil end
      for i = 1, 200 do t["k" .. i] = i end
      local n = 0
      for _ in pairs(t) do n = n + 1 end
      print(n)
    ]], { env = { LD_PRELOAD = dir .. "/shim.so", CFUT_SYSALLOC = "0" } })
    assert.equal(0, r.status, r.stderr)
    assert.equal("328\n", r.stdout)
  end)
end)
