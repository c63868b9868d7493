-- spec/manual_spec.lua: docs/manual.md documents every public name, and the
-- docs link nothing outside the repository.
--
-- The names are read from the module itself (the module table, the
-- executor and future methods), so a function added without its manual
-- entry fails here.  An entry is a heading of the manual (a line starting
-- with '#') that names the function as it is called: `futures.wait`,
-- `ex:submit`, `f:result`.

local futures = require "cfut"

local root = assert(os.getenv("CFUT_ROOT"), "CFUT_ROOT is not set (make test sets it)")

local function slurp (path)
  local fh = assert(io.open(path, "rb"))
  local s = fh:read("a")
  fh:close()
  return s
end

-- The headings of a markdown text, one string each.
local function headings (text)
  local hs = {}
  for line in text:gmatch("[^\n]+") do
    if line:match("^#+ ") then hs[#hs + 1] = line end
  end
  return hs
end

-- Is 'prefix .. name' in a heading, not followed by more of an identifier?
local function documented (hs, prefix, name)
  local pat = prefix:gsub("%p", "%%%0") .. name:gsub("%p", "%%%0")
              .. "[^%w_]"
  for _, h in ipairs(hs) do
    if (h .. " "):find(pat) then return true end
  end
  return false
end

local function sorted (t)
  local names = {}
  for k in pairs(t) do names[#names + 1] = k end
  table.sort(names)
  return names
end

-- Names that start with '_' are the module's internals (the process
-- worker's entry point, the chunk runner of map), except _VERSION.
local function public (name)
  return type(name) == "string" and (name:sub(1, 1) ~= "_" or name == "_VERSION")
end

local function missing (hs, prefix, names)
  local out = {}
  for _, name in ipairs(names) do
    if public(name) and not documented(hs, prefix, name) then
      out[#out + 1] = prefix .. name
    end
  end
  return out
end

-- The markdown files a user reads: README.md and docs/*.md.
local function docfiles ()
  local files = { "README.md" }
  local p = assert(io.popen("ls '" .. root .. "/docs'"))
  for name in p:lines() do
    if name:match("%.md$") then files[#files + 1] = "docs/" .. name end
  end
  p:close()
  return files
end

-- Normalize a relative path 'dir/target' ('..' and '.' resolved); nil when
-- it climbs above the repository root.
local function resolve (dir, target)
  local parts = {}
  for seg in (dir .. "/" .. target):gmatch("[^/]+") do
    if seg == ".." then
      if #parts == 0 then return nil end
      parts[#parts] = nil
    elseif seg ~= "." then
      parts[#parts + 1] = seg
    end
  end
  return table.concat(parts, "/")
end

describe("docs/manual.md", function ()
  local hs = headings(slurp(root .. "/docs/manual.md"))

  it("has an entry for every public name of the module table", function ()
    assert.same({}, missing(hs, "futures.", sorted(futures)))
  end)

  it("has an entry for every executor method", function ()
    local ex = futures.thread_pool(1)
    local index = getmetatable(ex).__index
    ex:shutdown()
    assert.is_table(index)
    local names = sorted(index)
    assert.is_true(#names >= 3)       -- submit, map, shutdown at least
    assert.same({}, missing(hs, "ex:", names))
  end)

  it("has an entry for every future method", function ()
    -- Future's __index is a C closure over its methods table (it looks
    -- in the handle's own fields next): read the methods from there (the
    -- upvalue that holds 'result': the metatable is an upvalue too).
    local index = getmetatable(futures.future()).__index
    local methods = index
    if type(index) == "function" then
      methods = nil
      for i = 1, 255 do
        local name, up = debug.getupvalue(index, i)
        if name == nil then break end
        if type(up) == "table" and type(rawget(up, "result")) == "function"
        then
          methods = up
          break
        end
      end
    end
    assert.is_table(methods)
    local names = sorted(methods)
    assert.is_true(#names >= 10)
    assert.same({}, missing(hs, "f:", names))
  end)

  it("links only to its own headings within itself", function ()
    -- GitHub's anchors: lower case, punctuation dropped, spaces as '-'.
    local text = slurp(root .. "/docs/manual.md")
    local anchors = {}
    for _, h in ipairs(headings(text)) do
      local slug = h:gsub("^#+ ", ""):lower():gsub("[^%w%s_-]", "")
                    :gsub("%s", "-")
      anchors[slug] = true
    end
    local bad, n = {}, 0
    for anchor in text:gmatch("%]%(#([^)%s]+)%)") do
      n = n + 1
      if not anchors[anchor] then bad[#bad + 1] = anchor end
    end
    assert.is_true(n > 0)
    assert.same({}, bad)
  end)

  it("finds a name only in a heading, as a whole name", function ()
    -- The check itself: a name in the text, or a longer name, is no entry.
    local fake = headings("# Intro\n#### `futures.waiting ()`\n"
                          .. "futures.nowhere in the text\n")
    assert.is_false(documented(fake, "futures.", "wait"))
    assert.is_false(documented(fake, "futures.", "nowhere"))
    assert.is_true(documented(fake, "futures.", "waiting"))
  end)
end)

describe("README.md and docs/*.md", function ()
  it("never point at the team's shared folder", function ()
    for _, file in ipairs(docfiles()) do
      local s = slurp(root .. "/" .. file)
      assert.is_nil(s:find("../shared", 1, true), file .. " mentions ../shared")
      assert.is_nil(s:find("shared/API.md", 1, true),
                    file .. " mentions shared/API.md")
    end
  end)

  it("link only to files inside the repository that exist", function ()
    local n = 0
    for _, file in ipairs(docfiles()) do
      local dir = file:match("^(.*)/") or "."
      for target in slurp(root .. "/" .. file):gmatch("%]%(([^)%s]+)%)") do
        n = n + 1
        assert.is_nil(target:match("^%a[%w+.-]*:"),
                      file .. " links out of the repository: " .. target)
        assert.is_nil(target:match("^/"),
                      file .. " links to an absolute path: " .. target)
        local path = target:gsub("#.*$", "")
        if path ~= "" then
          local rel = resolve(dir, path)
          assert.is_not_nil(rel, file .. " links above the repository: " .. target)
          local fh = io.open(root .. "/" .. rel, "rb")
          assert.is_not_nil(fh, file .. " links to a missing file: " .. target)
          fh:close()
        end
      end
    end
    assert.is_true(n > 0)             -- the README links the manual at least
  end)
end)
