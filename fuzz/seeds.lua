-- seeds.lua: the seed corpus, made by the encoder (cfut.dumps) from
-- varied values.  Run by the host: ./cfut fuzz/seeds.lua DIR
-- Writes DIR/decode/* (messages), DIR/frame/* (worker -> parent streams)
-- and DIR/roundtrip/* (generator programs for fuzz_roundtrip.c).
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
}

os.execute("mkdir -p '" .. dir .. "/decode' '" .. dir .. "/frame' '"
           .. dir .. "/roundtrip'")

local function frame (ftype, body)
  return string.pack("<I8", #body + 1) .. ftype .. body
end

local function result (id, failed, tb, msg)
  return frame("r", string.pack("<I8BI4", id, failed, #tb) .. tb .. msg)
end

for i, v in ipairs(values) do
  local msg = cfut.dumps(table.unpack(v, 1, v.n or #v + 1))
  write("decode", "v" .. i, msg)
  -- a worker that got ready, then answered tasks 1, 2, 3
  write("frame", "v" .. i, "\7" .. frame("R", "") .. result(1, 0, "", msg)
        .. result(2, 1, "stack traceback:\n\t[C]: in ?", msg)
        .. result(3, 0, "", cfut.dumps()))
end
write("frame", "initfail", "\1" .. frame("F", "boom"))
write("frame", "partial", "\3" .. frame("R", "") .. string.pack("<I8", 99))

-- generator programs: a few byte patterns that make tables, functions,
-- references and strings (see genvalue in fuzz_roundtrip.c)
local progs = {
  "\0\9\3\3\2\4\7\1\7\5hello", "\0\11\2\4\1\14\0", "\1\9\2\2\12\0\12\0\12\0",
  "\0\13\30", "\0\10\4\4\6\2\6\1\7\3abc\4\12\12\0\11\3\7\2hi",
  "\1\11\3\9\1\1\12\0\1", "\0\14\3", "\0\8\200\1\65",
}
for i, p in ipairs(progs) do write("roundtrip", "p" .. i, p) end
print(("seeds: %d messages, %d streams, %d programs in %s"):format(
  #values, #values + 2, #progs, dir))
