-- seeds.lua: the seed corpus, made by the encoder (cfut.dumps) from
-- varied values.  Run by the host: ./cfut fuzz/seeds.lua DIR
-- Writes DIR/decode/* (messages), DIR/frame/* (worker -> parent streams),
-- DIR/roundtrip/* (generator programs for fuzz_roundtrip.c) and
-- DIR/check/* (messages for fuzz_check.c: those of decode, plus some of
-- several MiB and some nested 200 000 deep, made here at each run).
local cfut = require "cfut"
local dir = assert(arg[1], "usage: cfut fuzz/seeds.lua DIR")

local function write (sub, name, bytes)
  local f = assert(io.open(dir .. "/" .. sub .. "/" .. name, "wb"))
  f:write(bytes)
  f:close()
end

local shared = { "shared" }
local cyc = { name = "cycle" }
cyc.self = cyc
local deep = {}
do
  local t = deep
  for _ = 1, 150 do t[1] = {} t = t[1] end
end
local list = { v = 1 }           -- a linked list 3000 deep
do
  local c = list
  for i = 2, 3000 do c.next = { v = i } c = c.next end
end
local up, up2 = { "shared upvalue" }, 7
local function getter () return up, up2 end
local function setter (v) up2 = v return getter end
local Class = { __name = "Class" }
Class.__index = Class
function Class.get (self) return self.x end
local records = {}
for i = 1, 50 do records[i] = { id = i, name = "r" .. i, ok = i % 2 == 0 } end
local big = {}
for i = 1, 300 do big[i] = i * 1.5 end

local values = {
  { }, { nil }, { true, false }, { 0, 1, -1, math.maxinteger, math.mininteger },
  { 0.0, -0.0, 1 / 0, -1 / 0, 0 / 0, 0.5, 2 ^ 63, 3.0 },
  { "", "a", "with\0nul", string.rep("x", 200), string.rep("\0\255", 100) },
  { { 1, 2, 3, nil, 5 } }, { { a = 1, b = { c = { d = "e" } } } },
  { shared, shared, { shared } }, { cyc }, { deep }, { records }, { big },
  { { [1.5] = "f", [true] = "t", [-7] = "n", [shared] = shared } },
  { setmetatable({}, { __index = shared }) }, { setmetatable({ 1 }, cyc) },
  { string, math.floor, _G, table.concat, io.write },
  { 1, "two", { 3 }, nil, 5.0 },
  { list }, { getter, setter }, { setmetatable({ x = 1 }, Class) },
  { function (a) return a + 1 end, { f = getter } },
}

os.execute("mkdir -p '" .. dir .. "/decode' '" .. dir .. "/frame' '"
           .. dir .. "/roundtrip' '" .. dir .. "/check'")

local function frame (ftype, body)
  return string.pack("<I8", #body + 1) .. ftype .. body
end

local function result (id, failed, tb, msg)
  return frame("r", string.pack("<I8BI4", id, failed, #tb) .. tb .. msg)
end

for i, v in ipairs(values) do
  local msg = cfut.dumps(table.unpack(v, 1, v.n or #v + 1))
  write("decode", "v" .. i, msg)
  write("check", "v" .. i, msg)
  -- a worker that got ready, then answered tasks 1, 2, 3
  write("frame", "v" .. i, "\7" .. frame("R", "") .. result(1, 0, "", msg)
        .. result(2, 1, "stack traceback:\n\t[C]: in ?", msg)
        .. result(3, 0, "", cfut.dumps()))
end
write("frame", "initfail", "\1" .. frame("F", "boom"))
write("frame", "partial", "\3" .. frame("R", "") .. string.pack("<I8", 99))

-- fuzz_check.c: big messages and nesting past every limit, written
-- byte by byte where the encoder would refuse them (docs/wire.md).
local function message (n, values) return "\27CF\1" .. n .. values end
local function func (nups, ups)       -- id, hash (not checked), no code
  return "\8" .. ("\1"):rep(16) .. string.char(nups) .. "\0" .. ups
end
local function chain (n, open, close, mid) -- open^n .. mid .. close^n
  return open:rep(n) .. (mid or "\0") .. close:rep(n)
end
local bigrecs = {}
for i = 1, 3000 do bigrecs[i] = { id = i, name = "r" .. i, ok = i % 3 == 0 } end
local checks = {
  records = cfut.dumps(bigrecs),                          -- about 80 KiB
  bigstring = cfut.dumps({ s = ("\0\255x"):rep(600000) }),
  nils = message("\128\128\68", ("\0"):rep(1114112)),    -- past the stack
}
for _, depth in ipairs{ 200, 201, 100000 } do
  local d = depth
  checks["array" .. d] = message("\1", chain(d, "\6\1\0", "\0"))
  checks["value" .. d] = message("\1", chain(d, "\6\0\1\5\1k", "\0"))
  checks["key" .. d] = message("\1", chain(d, "\6\0\1", "\2\0", "\2"))
  checks["meta" .. d] = message("\1", ("\6\0\0"):rep(d) .. "\0")
  checks["mixed" .. d] = message("\1", ("\6\0\0"):rep(d % 2)
                                 .. chain(d // 2, "\6\1\0\6\0\0", "\0"))
  checks["upvalue" .. d] = message("\1", (func(1, "")):rep(d - 1)
                                   .. func(0, ""))
end
-- (deep, yet each decodes in a few seconds under ASan: the target's
-- timeout is 20 s)
checks.meta200k = message("\1", ("\6\0\0"):rep(200000) .. "\0")
checks.array200k = message("\1", chain(200000, "\6\1\0", "\0"))
-- nesting the bytes claim but do not hold
checks.short200k = message("\1", ("\6\1\0"):rep(200000))
checks.shortmeta = message("\1", ("\6\0\0"):rep(100000))
checks.list = cfut.dumps(list)
checks.upref = message("\2", func(1, "\3" .. ("\0"):rep(8))
                       .. func(2, "\1\9\1\1"))
checks.badupref = message("\1", func(1, "\9\1\2"))
checks.uprefdata = message("\2", "\6\0\0\0" .. func(1, "\9\1\1"))
checks.metastring = message("\1", "\6\0\1\14\1a\2\7\2")
checks.handle = "\27CF\129\1\12" .. ("\0"):rep(8)
for name, bytes in pairs(checks) do write("check", name, bytes) end

-- generator programs: a few byte patterns that make tables, functions,
-- references and strings (see genvalue in fuzz_roundtrip.c)
local progs = {
  "\0\9\3\3\2\4\7\1\7\5hello", "\0\11\2\4\1\14\0", "\1\9\2\2\12\0\12\0\12\0",
  "\0\13\30", "\0\10\4\4\6\2\6\1\7\3abc\4\12\12\0\11\3\7\2hi",
  "\1\11\3\9\1\1\12\0\1", "\0\14\3", "\0\8\200\1\65",
}
for i, p in ipairs(progs) do write("roundtrip", "p" .. i, p) end
local nchecks = 0
for _ in pairs(checks) do nchecks = nchecks + 1 end
print(("seeds: %d messages, %d streams, %d programs, %d checks in %s"):format(
  #values, #values + 2, #progs, #values + nchecks, dir))
