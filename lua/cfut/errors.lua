-- cfut.errors: the error classes of cfut, installed into the module table.
--
-- An error is a table {name = <class name>, message = <text>} whose metatable
-- is its class.  A class is a table with `name`, `__index` (itself),
-- `__tostring` and `super` (its parent class).  Because the classes are
-- fields of the loaded module, the marshaller sends an error's metatable by
-- name, so an error keeps its class when it crosses between states.

local function tostr (e)
  if e.message == nil or e.message == "" then return e.name end
  return e.name .. ": " .. tostring(e.message)
end

local function new_class (M, name, super)
  local cls = { name = name, super = super, __tostring = tostr }
  cls.__index = cls
  cls.__name = "cfut." .. name
  -- Calling a class makes an error of it: futures.TimeoutError("msg").
  setmetatable(cls, { __call = function (c, msg)
    return setmetatable({ name = c.name, message = msg or "" }, c)
  end, __tostring = function (c) return "<class '" .. c.name .. "'>" end })
  M[name] = cls
  return cls
end

return function (M)
  local Error = new_class(M, "Error", nil)
  new_class(M, "CancelledError", Error)
  new_class(M, "TimeoutError", Error)
  new_class(M, "InvalidStateError", Error)
  new_class(M, "ShutdownError", Error)
  local Broken = new_class(M, "BrokenExecutor", Error)
  new_class(M, "BrokenThreadPool", Broken)
  local BrokenProcess = new_class(M, "BrokenProcessPool", Broken)
  -- An MPI pool is a process pool whose workers are MPI processes: code
  -- written for process_pool that tests BrokenProcessPool works unchanged.
  new_class(M, "BrokenMPIPool", BrokenProcess)

  -- futures.is(e, Class): is e an error of Class or one of its subclasses?
  function M.is (e, cls)
    if type(cls) ~= "table" or rawget(cls, "__index") ~= cls then
      error("bad argument #2 to 'is' (error class expected, got "
            .. type(cls) .. ")", 2)
    end
    if type(e) ~= "table" then return false end
    local c = getmetatable(e)
    -- Bounded: a metatable made by hand may have a 'super' cycle.
    for _ = 1, 100 do
      if type(c) ~= "table" then return false end
      if c == cls then return true end
      c = rawget(c, "super")
    end
    return false
  end
end
