-- cfut.iter: Executor:map, built on submit and Future:result.
--
-- map submits every item at once (or, with buffersize = b, keeps at most b
-- items in flight ahead of the loop) and yields results in input order as
-- `i, ...`: the 1-based position, then every value the task returned; with
-- unordered = true, in the order the items finish.

local select, type, error, setmetatable, getmetatable, tostring =
      select, type, error, setmetatable, getmetatable, tostring
local unpack, pack = table.unpack, table.pack

local function callable (v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__call ~= nil
end

-- Argument errors travel as {argerror = text} up to Executor.map, which
-- raises them at its caller's line whatever the depth they came from.
-- 'n' is the argument's number, or in the map{...} form the label of the
-- table's field ("field [2]"), the table being argument #1.
local function argerror (n, msg)
  if type(n) == "string" then n, msg = 1, n .. ": " .. msg end
  error({ argerror = ("bad argument #%d to 'map' (%s)"):format(n, msg) })
end

-- Where the k-th of fn, iterable, ... is, as argerror takes it.
local function plainpos (k) return k end
local function fieldpos (k) return ("field [%d]"):format(k) end

-- The names map{...} takes besides its sequence part.
local OPTIONS = { timeout = true, chunksize = true, buffersize = true,
                  unordered = true, progress = true }

-- Reject a key of map{...} that is neither in 1..#t nor a known name.
local function checkkeys (t)
  local n = #t
  for k in pairs(t) do
    if type(k) == "string" then
      if not OPTIONS[k] then argerror(1, ("unknown option '%s'"):format(k)) end
    elseif math.type(k) ~= "integer" or k < 1 or k > n then
      argerror(1, ("unexpected key %s (map{fn, iterable, ..., name = value})")
                  :format(tostring(k)))
    end
  end
end

-- Most items one map takes (src/lmap.c has the same bound).
local MAXITEMS = (1 << 28) - 1

-- The length of sequence table t, the iterable at argument argn: t.n when
-- it is a number, else #t; an integer from 0 to MAXITEMS.
local function seqlen (t, argn)
  local n, what = t.n, "field 'n'"
  if type(n) ~= "number" then n, what = #t, "length" end
  local len = math.tointeger(n)
  if not len or len < 0 or len > MAXITEMS then
    argerror(argn, ("%s must be an integer from 0 to %d, got %s")
                   :format(what, MAXITEMS, tostring(n)))
  end
  return len
end

-- An iterator over one iterable: a sequence table (1..#t, or 1..t.n) or
-- an iterator function.  Returns a function giving (true, item) or false.
local function items (it, n)
  if type(it) == "table" then
    local last = seqlen(it, n)
    local i = 0
    return function ()
      if i >= last then return false end
      i = i + 1
      return true, it[i]
    end
  elseif type(it) == "function" then
    local finished = false
    return function ()
      if finished then return false end
      local v = it()
      if v == nil then finished = true; return false end
      return true, v
    end
  end
  argerror(n, "sequence table or iterator function expected, got " .. type(it))
end

-- Zip the iterables: each call gives an argument pack, or nil at the end
-- of the shortest.  pos(k + 1) says where iterable k is.
local function zip (iterables, pos)
  local its = {}
  for k = 1, iterables.n do its[k] = items(iterables[k], pos(k + 1)) end
  local n = #its
  return function ()
    local args = { n = n }
    for k = 1, n do
      local ok, v = its[k]()
      if not ok then return nil end
      args[k] = v
    end
    return args
  end
end

local function posint (v, name)
  if v == nil then return nil end
  if math.type(v) ~= "integer" or v < 1 then
    argerror(1, "field '" .. name .. "' must be a positive integer")
  end
  return v
end

-- Read the two call forms into fn, iterables, timeout, buffersize, pos
-- (where the k-th of fn, iterable, ... is), chunksize (0: not given),
-- progress, unordered.
local function options (fn, ...)
  if select("#", ...) == 0 and type(fn) == "table" and not callable(fn) then
    local t = fn
    checkkeys(t)
    local its = pack(unpack(t, 2, #t))
    local p = t.progress
    if p ~= nil and type(p) ~= "boolean" and not callable(p) then
      argerror(1, "field 'progress' must be a boolean or a function")
    end
    if t.timeout ~= nil and type(t.timeout) ~= "number" then
      argerror(1, "field 'timeout' must be a number")
    end
    if t.timeout ~= t.timeout then
      argerror(1, "field 'timeout' must be a number, not NaN")
    end
    local u = t.unordered
    if u ~= nil and type(u) ~= "boolean" then
      argerror(1, "field 'unordered' must be a boolean")
    end
    return t[1], its, t.timeout, posint(t.buffersize, "buffersize"),
           fieldpos, posint(t.chunksize, "chunksize") or 0, p, u
  end
  return fn, pack(...), nil, nil, plainpos, 0
end

-- Every item known up front.  When all iterables are tables they are
-- passed as they are with the length of the shortest; otherwise the items
-- are pulled in lockstep, as Python's zip does (an endless iterator next to
-- a short table stops with it), into one table per iterable.
local function materialize (its, pos)
  local n, alltables = math.huge, true
  for k = 1, its.n do
    local it = its[k]
    if type(it) == "table" then
      local len = seqlen(it, pos(k + 1))
      if len < n then n = len end
    else
      alltables = false
    end
  end
  if alltables then return n, its end
  local nextargs = zip(its, pos)
  local tables, count = {}, 0
  for k = 1, its.n do tables[k] = {} end
  while true do
    local args = nextargs()
    if args == nil then break end
    count = count + 1
    for k = 1, its.n do tables[k][count] = args[k] end
  end
  return count, tables
end

-- How many items map over 'its' will yield, when every iterable is a
-- table (nil when an iterator function makes it unknown).
local function total (its)
  local n = math.huge
  for k = 1, its.n do
    if type(its[k]) ~= "table" then return nil end
    n = math.min(n, seqlen(its[k], 1))
  end
  return n
end

return function (M, Executor, bars)
  local submit = Executor.submit
  local mapsubmit = M._mapsubmit
  M._mapsubmit = nil
  local monotonic, wait = M.monotonic, M.wait

  local MapIter = { __name = "cfut.MapIterator" }
  MapIter.__index = MapIter
  function MapIter.__tostring (self)
    return ("<map iterator at %s>"):format(self.id)
  end

  -- End the map: cancel what is still queued (f, the item taken, too: it
  -- may be the one that timed out) and let later calls find nothing, as a
  -- Python generator that raised.
  local function endmap (st, f)
    if f then f:cancel() end
    for k, g in pairs(st.fs) do
      g:cancel()
      st.fs[k] = nil
    end
    st.head, st.tail, st.count = 1, 0, 0
  end

  -- A map that is collected cancels what it still has in flight, as the
  -- batch does (src/lmap.c): like a Python generator closed.  Lua runs
  -- finalizers in the reverse order of their setmetatable, so the guard
  -- that does it is made anew after each submit: the newest guard then
  -- runs before the finalizers of every future it cancels.  An older
  -- guard does nothing.
  local Guard = { __gc = function (g)
    if g.st.guard == g then endmap(g.st) end
  end }

  -- Submit the next item as position tail + 1 (false at the end).
  local function push (st)
    local args = st.nextargs()
    if args == nil then return false end
    st.tail = st.tail + 1
    st.fs[st.tail] = submit(st.ex, st.fn, unpack(args, 1, args.n))
    st.count = st.count + 1
    st.guard = setmetatable({ st = st }, Guard)
    return true
  end

  local function deliver (st, f, i, ok, ...)
    if not ok then
      endmap(st, f)
      error((...), 0)
    end
    return i, ...
  end

  -- Unordered: the first position in flight (st.fs holds them, st.count
  -- of them) whose item finished, once one has; the map ends on a
  -- timeout or on Ctrl-C in the wait.
  local function nextany (st)
    local list, k = {}, 0
    for _, g in pairs(st.fs) do k = k + 1; list[k] = g end
    local remaining
    if st.deadline then
      remaining = st.deadline - monotonic()
      if remaining < 0 then remaining = 0 end
    end
    local ok, err = pcall(wait, list, remaining, "FIRST_COMPLETED")
    if not ok then
      endmap(st)
      error(err, 0)
    end
    local i, f
    for p, g in pairs(st.fs) do
      if (i == nil or p < i) and g:done() then i, f = p, g end
    end
    if i == nil then
      endmap(st)
      error(M.TimeoutError(""), 0)
    end
    st.fs[i] = nil
    st.count = st.count - 1
    ok, err = pcall(push, st)
    if not ok then
      endmap(st, f)
      error(err, 0)
    end
    return i, f
  end

  function MapIter.__call (self)
    local st = self.st
    if st.unordered then
      if st.count == 0 then return end
      local i, f = nextany(st)
      return deliver(st, f, i, pcall(f.result, f, 0))
    end
    if st.head > st.tail then return nil end
    local i = st.head
    local f = st.fs[i]
    st.fs[i] = nil
    st.head = i + 1
    if st.buffersize then
      -- An iterator that raises ends the map: cancel what it queued.
      local ok, err = pcall(push, st)
      if not ok then
        endmap(st, f)
        error(err, 0)
      end
    end
    local remaining
    if st.deadline then
      remaining = st.deadline - monotonic()
      if remaining < 0 then remaining = 0 end
    end
    return deliver(st, f, i, pcall(f.result, f, remaining))
  end

  -- ex:map(fn, iterable, ...) or ex:map{fn, iterable, ..., timeout=,
  -- chunksize=, buffersize=}
  local function startmap (ex, ...)
    local fn, its, timeout, buffersize, pos, chunksize, progress, unordered =
      options(...)
    if not callable(fn) then
      argerror(pos(1), "function expected, got " .. type(fn))
    end
    if its.n == 0 then argerror(pos(2), "iterable expected, got no value") end
    if not buffersize then
      local n, tables = materialize(its, pos)
      return mapsubmit(ex, fn, timeout, n, chunksize, unordered, M._runchunk,
                       unpack(tables, 1, its.n)), progress, n
    end
    local st = { ex = ex, fn = fn, fs = {}, head = 1, tail = 0, count = 0,
                 buffersize = buffersize, unordered = unordered,
                 nextargs = zip(its, pos) }
    if timeout then st.deadline = monotonic() + timeout end
    if buffersize then
      for _ = 1, buffersize do
        if not push(st) then break end
      end
    else
      while push(st) do end
    end
    local self = setmetatable({ st = st }, MapIter)
    self.id = tostring(st):match("0x%x+") or tostring(st)
    return self, progress, progress and total(its)
  end

  function Executor.map (ex, ...)
    local mt = getmetatable(ex)
    if type(ex) ~= "userdata" or type(mt) ~= "table"
       or rawget(mt, "__index") ~= Executor then
      local name = type(mt) == "table" and rawget(mt, "__name")
      error(("calling 'map' on bad self (cfut.Executor expected, got %s)")
            :format(type(name) == "string" and name or type(ex)), 2)
    end
    local ok, r, progress, n = pcall(startmap, ex, ...)
    if ok and progress then
      -- iterator, nil, nil, and the bar as the loop's closing value.
      local iter, bar = bars.wrap(r, progress, n)
      return iter, nil, nil, bar
    end
    if ok then return r end
    if type(r) == "table" and getmetatable(r) == nil and r.argerror then
      error(r.argerror, 2)
    end
    error(r, 0)
  end
end
