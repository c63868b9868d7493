-- cfut.progress: the progress option of map, as_completed and wait.
--
-- progress = true draws one line on stderr, only when stderr is a
-- terminal: done/total, percent, a bar, the rate, the time elapsed and the
-- time left.  It is shown only while the loop waits for its next item, and
-- erased before the item goes to the loop body, so what the body prints
-- never lands on it (src/lbar.c says how thread workers' print is kept
-- apart too).  progress = function (done, total) end is called instead,
-- each time 'done' changes; total is nil when it is not known (map over an
-- iterator function with buffersize).

local type, error, pcall, setmetatable, tostring =
      type, error, pcall, setmetatable, tostring
local floor, format, rep, concat = math.floor, string.format, string.rep,
                                   table.concat

local REDRAW = 0.1      -- seconds between two redraws of a line

-- "1:05", "1:02:03" (seconds s).
local function clock (s)
  s = floor(s + 0.5)
  if s >= 3600 then
    return format("%d:%02d:%02d", s // 3600, s % 3600 // 60, s % 60)
  end
  return format("%d:%02d", s // 60, s % 60)
end

return function (_, C)
  local now = C.monotonic

  local Bar = {}
  Bar.__index = Bar

  -- The line for 'done' of 'total' after 'elapsed' seconds, at most
  -- 'width' columns wide.
  local function line (done, total, elapsed, width)
    local rate = elapsed > 0 and done / elapsed or 0
    local parts = {}
    if total then
      local frac = total > 0 and done / total or 1
      local cells = 20
      local full = floor(frac * cells)
      parts[#parts + 1] = format("%d/%d %3d%% [%s%s]", done, total,
                                 floor(frac * 100), rep("#", full),
                                 rep(".", cells - full))
    else
      parts[#parts + 1] = format("%d", done)
    end
    parts[#parts + 1] = format("%.1f/s", rate)
    parts[#parts + 1] = clock(elapsed)
    if total and rate > 0 and done < total then
      parts[#parts + 1] = clock((total - done) / rate) .. " left"
    end
    local s = concat(parts, "  ")
    if #s > width - 1 then s = s:sub(1, width - 1) end
    return s
  end

  -- Draw the line if none is shown or the one shown is REDRAW old.
  function Bar:draw ()
    local t = now()
    if self.drawn and t - self.drawn < REDRAW then return end
    self.drawn = t
    C.show(line(self.done, self.total, t - self.start, self.width))
  end

  -- A new count of items done: the function is told; a line is redrawn
  -- when it is next due.
  function Bar:update (done)
    if done == self.done then return end
    self.done = done
    if self.fn then self.fn(done, self.total) end
  end

  -- The loop waits for its next item: the waits of this state draw it.
  function Bar:waiting ()
    if not self.width or self.closed then return end
    self.prev = C.current()
    C.activate(self)
  end

  -- Control goes back to the script: erase the line.
  function Bar:hide ()
    if not self.width then return end
    if C.current() == self then C.activate(self.prev) end
    self.prev = nil
    self.drawn = nil
    C.hide()
  end

  function Bar:close ()
    self:hide()
    self.closed = true
  end

  Bar.__close = Bar.close

  -- A bar for option value p (true, false, nil or a function) over
  -- 'total' items (nil: unknown).  Inert when p is false or nil, or when
  -- p is true and stderr is not a terminal.
  function C.newbar (p, total)
    local b = setmetatable({ done = -1, total = total, start = now() }, Bar)
    if type(p) == "function" or (type(p) ~= "boolean" and p ~= nil) then
      b.fn = p
    elseif p == true then
      b.width = C.terminal()
    end
    b:update(0)
    return b
  end

  local function finish (bar, n, ok, ...)
    if not ok then
      bar:close()
      error((...), 0)
    end
    if (...) == nil then
      bar:close()
      return nil
    end
    bar:update(n)
    bar:hide()
    return ...
  end

  -- Wrap the iterator 'inner' (called with no arguments) so that a bar
  -- over 'total' items follows it.  Returns the iterator and the bar, the
  -- closing value of a generic for (a loop left by break erases it).
  function C.wrap (inner, p, total)
    local bar = C.newbar(p, total)
    local n = 0
    local function iter ()
      if bar.closed then return nil end
      bar:waiting()
      n = n + 1
      return finish(bar, n, pcall(inner))
    end
    local wrapped = setmetatable({}, {
      __call = iter,
      __tostring = function () return tostring(inner) end,
      __name = "cfut.ProgressIterator",
    })
    return wrapped, bar
  end
end
