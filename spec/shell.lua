-- spec/shell.lua: small file and shell helpers for the specs that run
-- programs as child processes (host, help, repl, rock, install).  Unlike
-- helpers.lua it does not load cfut, so a spec can use it to check the
-- program even where the module would not load.

local M = {}

-- 's' quoted for sh as one word.
function M.q (s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- The contents of the file at 'path', or nil if it cannot be opened.
function M.readfile (path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- Write 's' to the file at 'path'; returns 'path'.
function M.writefile (path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
  return path
end

-- Whether a file (or directory) at 'path' can be opened.
function M.exists (path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- A new empty directory; removed by the spec file's teardown when
-- 'teardown' (busted's) is given.
function M.tmpdir (teardown)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir " .. M.q(dir)))
  if teardown then
    teardown(function () os.execute("rm -rf " .. M.q(dir)) end)
  end
  return dir
end

return M
