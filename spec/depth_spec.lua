-- spec/depth_spec.lua: issue 11 §4 and §5.  Nesting has no limit but
-- memory (the marshaller walks with a stack in heap memory, never the C
-- stack), and results come back from process workers by the same rules
-- as from threads: functions, closures with their upvalues, objects whose
-- metatable holds methods.

local futures = require "cfut"
local helpers = require "helpers"

local LONG = helpers.LONG
local errof = helpers.errof

-- A million nodes: four walks (there and back), each of the whole list.
-- Sanitized builds are ten times slower: a tenth of it there.
local NODES = helpers.sanitized and 100000 or 1000000
-- A bound for a wait on so big a value (not a measure of its speed).
local HUGE_WAIT = LONG * 60

after_each(helpers.cleanup)

local function pool (kind, n)
  local make = kind == "thread" and futures.thread_pool
               or futures.process_pool
  return helpers.track(make(n or 1))
end

-- A linked list of n nodes: { v = 1, next = { v = 2, next = ... } }.
local function list (n)
  local head = { v = 1 }
  local c = head
  for i = 2, n do
    c.next = { v = i }
    c = c.next
  end
  return head
end

-- Its length, checking every node's number on the way.
local function length (l)
  local n = 0
  while l do
    n = n + 1
    assert(l.v == n, "node " .. n .. " holds " .. tostring(l.v))
    l = l.next
  end
  return n
end

describe("a linked list", function ()

  it("of a million nodes crosses dumps and loads", function ()
    local s = futures.dumps(list(NODES))
    assert.equal(NODES, length(futures.loads(s)))
  end)

  for _, kind in ipairs{ "thread", "process" } do

    it("of a million nodes crosses to a " .. kind .. " worker and back",
       function ()
      local ex = pool(kind)
      -- There: the worker walks it; back: the worker builds one.
      local f = ex:submit(function (l)
        local n = 0
        while l do
          n = n + 1
          l = l.next
        end
        return n
      end, list(NODES))
      assert.equal(NODES, f:result(HUGE_WAIT))
      f = ex:submit(list, NODES)
      assert.equal(NODES, length(f:result(HUGE_WAIT)))
      -- Both ways in one task: the copy that returns is the one sent.
      f = ex:submit(function (l) return l end, list(1000))
      assert.equal(1000, length(f:result(LONG)))
    end)

    it("that cannot come back from a " .. kind .. " worker is named, the "
       .. "middle of its path cut", function ()
      local ex = pool(kind)
      local f = ex:submit(function (n)
        local head = { v = 1 }
        local c = head
        for i = 2, n do
          c.next = { v = i }
          c = c.next
        end
        c.log = io.stderr
        return head
      end, 5000)
      assert.equal("cannot send result #1 (field 'next.next.next.next."
                   .. "next.next...next.next.next.next.next.log': userdata "
                   .. "FILE*) from a worker", errof(f.result, f, LONG))
      assert.equal(42, ex:submit(function () return 42 end):result(LONG))
    end)
  end
end)

-- Tables whose last entry is the deep one: the writer lets the child take
-- its parent's place (mdeep.c), so these shapes check that the bytes and
-- the error paths are what a frame per level gives.
describe("a chain whose last entry goes deeper", function ()

  local DEEP = 3000

  local function chain (n, key, leaf)
    local l = leaf or {}
    for _ = 1, n do l = { [key] = l } end
    return l
  end

  local function depthof (l, key)
    local n = 0
    while type(l) == "table" and l[key] ~= nil do
      n = n + 1
      l = l[key]
    end
    return n, l
  end

  it("crosses with string, integer, float and boolean keys", function ()
    for _, key in ipairs{ "next", 1, 2.5, true } do
      local n, leaf = depthof(futures.loads(futures.dumps(
        chain(DEEP, key, { x = 7 }))), key)
      assert.equal(DEEP, n)
      assert.equal(7, leaf.x)
    end
  end)

  it("keeps shared tables and cycles", function ()
    local shared = { "shared" }
    local head = { s = shared }
    local c = head
    for i = 1, DEEP do
      c.next = { i = i, s = shared }
      c = c.next
    end
    c.next = head                       -- a cycle through the whole chain
    local back = futures.loads(futures.dumps(head))
    local seen, p = 0, back.next
    while p ~= back do
      seen = seen + 1
      assert.equal(seen, p.i)
      assert.equal(back.s, p.s)         -- one copy of the shared table
      p = p.next
    end
    assert.equal(DEEP, seen)
    assert.equal("shared", back.s[1])
  end)

  it("keeps the metatables of its nodes (they close as frames)", function ()
    local mt = { __index = { kind = "node" } }
    local l = setmetatable({}, mt)
    for _ = 1, DEEP do l = setmetatable({ next = l }, mt) end
    local back = futures.loads(futures.dumps(l))
    local n = 0
    while back.next do
      assert.equal("node", back.kind)
      n = n + 1
      back = back.next
    end
    assert.equal(DEEP, n)
    assert.equal("node", back.kind)     -- the leaf's own
  end)

  it("closes through functions whose upvalue goes deeper", function ()
    local l = { leaf = true }
    for _ = 1, DEEP do
      local inner = l
      l = { f = function () return inner end }
    end
    local back = futures.loads(futures.dumps(l), true)
    local n = 0
    while back.f do
      n = n + 1
      back = back.f()
    end
    assert.equal(DEEP, n)
    assert.is_true(back.leaf)
  end)

  it("names the path to what cannot cross, its last steps included",
     function ()
    for _, c in ipairs{
      { "next", "'next.next.next.next.next.next...next.next.next.next.next."
                .. "log'" },
      { 1, "'[1][1][1][1][1][1]...[1][1][1][1][1].log'" },
      { true, "'[true][true][true][true][true][true]...[true][true][true]"
              .. "[true][true].log'" },
    } do
      local e = errof(futures.dumps, chain(DEEP, c[1], { log = io.stderr }))
      assert.equal("cannot dump argument #1 (field " .. c[2]
                   .. ": userdata FILE*)", e)
    end
    -- a key of its own at each level: the steps shown are the right ones,
    -- whether the levels closed early, kept their frames (a metatable
    -- every third level) or go through functions (every fourth)
    local function numbered (meta, fn)
      local l = { log = io.stderr }
      for i = DEEP, 1, -1 do
        local inner = l
        l = { ["k" .. i] = (fn and i % 4 == 0) and function () return inner end
                           or l }
        if meta and i % 3 == 0 then setmetatable(l, {}) end
      end
      return l
    end
    local plain = "cannot dump argument #1 (field 'k1.k2.k3.k4.k5.k6...k2996."
                  .. "k2997.k2998.k2999.k3000.log': userdata FILE*)"
    assert.equal(plain, errof(futures.dumps, numbered()))
    assert.equal(plain, errof(futures.dumps, numbered(true)))
    assert.equal("cannot dump argument #1 (field 'k1.k2.k3.k4', upvalue "
                 .. "'inner', field 'k5...k2997.k2998.k2999.k3000', upvalue "
                 .. "'inner', field 'log': userdata FILE*)",
                 errof(futures.dumps, numbered(true, true)))
  end)
end)

describe("a global that a task reads", function ()

  it("is named by its path when it cannot be sent deep down", function ()
    local ex = pool("thread")
    local head = {}
    local c = head
    for _ = 1, 5000 do
      c.next = {}
      c = c.next
    end
    c.log = io.stderr
    cfut_depth_spec_global = head
    local e = errof(function ()
      return ex:submit(function () return cfut_depth_spec_global end)
    end)
    cfut_depth_spec_global = nil
    e = e:gsub("^[^:]*:%d+: ", "")      -- (where submit was called)
    assert.equal("cannot send argument #1 (global 'cfut_depth_spec_global', "
                 .. "field 'next.next.next.next.next...next.next.next.next."
                 .. "next.log': userdata FILE*) to a worker", e)
  end)
end)

describe("a value the parent cannot rebuild", function ()

  -- A module the worker has and the parent lacks: its value crosses as
  -- the module's name, which the parent cannot load.
  local function lacking (kind, n)
    local ex = pool(kind)
    return ex:submit(function (nodes)
      local name = "cfut_depth_spec_only_in_worker"
      package.loaded[name] = {}
      local head = { v = 1 }
      local c = head
      for i = 2, nodes do
        c.next = { v = i }
        c = c.next
      end
      c.m = package.loaded[name]
      return head
    end, n), ex
  end

  for _, kind in ipairs{ "thread", "process" } do

    it("is named by its path (" .. kind .. " pool)", function ()
      local f, ex = lacking(kind, 3)
      assert.equal("cannot receive the outcome of a task: result #1 (field "
                   .. "'next.next.m': cannot load module "
                   .. "'cfut_depth_spec_only_in_worker': module "
                   .. "'cfut_depth_spec_only_in_worker' not found)",
                   errof(f.result, f, LONG))
      f = ex:submit(function ()
        local name = "cfut_depth_spec_only_in_worker2"
        package.loaded[name] = {}
        local m = package.loaded[name]
        error({ { function () return m end } })
      end)
      assert.matches("^cannot receive the outcome of a task: error value #1 "
                     .. "%(field '%[1%]%[1%]', upvalue 'm': cannot load "
                     .. "module 'cfut_depth_spec_only_in_worker2'",
                     errof(f.result, f, LONG))
      assert.equal(42, ex:submit(function () return 42 end):result(LONG))
    end)

    it("is named by its path, the middle cut, deep down (" .. kind
       .. " pool)", function ()
      for _, n in ipairs{ 150, 5000 } do
        local f = lacking(kind, n)
        assert.matches("^cannot receive the outcome of a task: result #1 "
                       .. "%(field 'next%.next%.next%.next%.next%.next%.%.%."
                       .. "next%.next%.next%.next%.next%.m': cannot load "
                       .. "module 'cfut_depth_spec_only_in_worker'",
                       errof(f.result, f, LONG))
      end
    end)
  end
end)

describe("code from a process worker", function ()

  it("comes back: a function", function ()
    local ex = pool("process")
    local fn = ex:submit(function ()
      return function (a, b) return a * b end
    end):result(LONG)
    assert.equal(42, fn(6, 7))
  end)

  it("comes back: a closure with its upvalues, shared as in the worker",
     function ()
    local ex = pool("process")
    local inc, get = ex:submit(function ()
      local n = 10
      return function () n = n + 1 end, function () return n end
    end):result(LONG)
    inc()
    inc()
    assert.equal(12, get())
  end)

  it("comes back: an object whose metatable has methods", function ()
    local ex = pool("process")
    local Account = {}
    Account.__index = Account
    function Account.new (owner, balance)
      return setmetatable({ owner = owner, balance = balance }, Account)
    end
    function Account:deposit (v)
      self.balance = self.balance + v
      return self
    end
    function Account:__tostring ()
      return self.owner .. ": " .. self.balance
    end
    local acct = ex:submit(function ()
      return Account.new("ada", 10):deposit(5)
    end):result(LONG)
    assert.equal(15, acct.balance)
    acct:deposit(27)
    assert.equal("ada: 42", tostring(acct))
    -- a copy: the class that came back is not the parent's own table
    assert.are_not.equal(Account, getmetatable(acct))
  end)

  it("comes back inside an error value and in map results", function ()
    local ex = pool("process")
    local f = ex:submit(function ()
      error({ retry = function () return "again" end })
    end)
    assert.equal("again", f:exception(LONG).retry())
    local it = ex:map(function (x)
      return function () return x * 2 end
    end, { 1, 2, 3 })
    local got = {}
    for i, fn in it do got[i] = fn() end
    assert.same({ 2, 4, 6 }, got)
  end)

  it("is checked before it is loaded: damaged bytecode never runs",
     function ()
    local s = futures.dumps(function () return 1 end)
    -- flip a byte of the bytecode (after the tag, id, hash and length)
    local i = 5 + 1 + 17 + 2
    local bad = s:sub(1, i - 1) .. string.char((s:byte(i) + 1) % 256)
                .. s:sub(i + 1)
    local e = errof(futures.loads, bad, true)
    assert.matches("^cannot load: damaged function bytecode at byte 5$", e)
  end)

  it("is still refused by futures.loads without allow_code", function ()
    local s = futures.dumps(function () return 1 end)
    assert.matches("functions from another process are not accepted",
                   errof(futures.loads, s), 1, true)
    assert.equal(1, futures.loads(s, true)())
  end)
end)
