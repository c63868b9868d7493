-- spec/repl_spec.lua: the REPL of `cfut` with GNU readline (line editing,
-- history), checked through a pseudo-terminal and against lua5.4, and the
-- plain fallback built with READLINE=no.

local shell = require "shell"
local q, readfile, writefile = shell.q, shell.readfile, shell.writefile
local BIN = assert(os.getenv("CFUT_BIN"), "CFUT_BIN is not set")
local ROOT = assert(os.getenv("CFUT_ROOT"), "CFUT_ROOT is not set")

local tmp = shell.tmpdir(teardown)

-- Run the shell command 'cmd' with stdin from the string 'input'; returns
-- {code, out, err}.
local function sh (cmd, input)
  local i, o, e = tmp .. "/in", tmp .. "/out", tmp .. "/err"
  writefile(i, input or "")
  local _, _, code = os.execute("env -u LUA_INIT -u LUA_INIT_5_4 " ..
    "timeout 60 " .. cmd .. " <" .. q(i) .. " >" .. q(o) .. " 2>" .. q(e))
  return { code = code, out = readfile(o), err = readfile(e) }
end

local function linked (prog, lib)
  local r = sh("ldd " .. q(prog))
  return r.code == 0 and r.out:find(lib, 1, true) ~= nil
end

-- The output after the version line.
local function transcript (out)
  return (out:gsub("^[^\n]*\n", "", 1))
end

-- A pty driver: runs argv[1] on a pseudo-terminal, then for each further
-- argument "send:TEXT" writes TEXT, "expect:N:TEXT" reads until TEXT has
-- come N times in all (10 s at most); both with Python escapes (\r, \x1b).
-- Writes everything read (until the program ends) on stdout.
local driver = writefile(tmp .. "/ptydrive.py", [==[
import codecs, fcntl, os, pty, select, struct, sys, termios, time
pid, fd = pty.fork()
if pid == 0:
    # A wide terminal: readline scrolls no line sideways, so what it
    # shows does not depend on how the typed bytes are batched.
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 200, 0, 0))
    os.environ["TERM"] = "dumb"
    os.execv(sys.argv[1], [sys.argv[1]])
out = b""
def readuntil(what, count, limit=10):
    global out
    end = time.time() + limit
    while out.count(what) < count and time.time() < end:
        if not select.select([fd], [], [], max(0, end - time.time()))[0]:
            break
        try:
            data = os.read(fd, 1024)
        except OSError:
            break
        if not data:
            break
        out += data
def unescape(s):
    return codecs.decode(s, "unicode_escape").encode("latin-1")
for step in sys.argv[2:]:
    kind, _, arg = step.partition(":")
    if kind == "send":
        os.write(fd, unescape(arg))
    else:
        n, _, what = arg.partition(":")
        readuntil(unescape(what), int(n))
readuntil(b"never", 1, 10)
# The terminal is closed; the program ends within 10 s, or is reported.
end = time.time() + 10
while os.waitpid(pid, os.WNOHANG) == (0, 0):
    if time.time() > end:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        out += b"\n[the program did not end]\n"
        break
    time.sleep(0.01)
sys.stdout.write(out.decode("latin-1"))
]==])

-- Drive 'prog' on a pty through 'steps'; returns what it wrote.
local function drive (prog, steps)
  local words = {}
  for i, s in ipairs(steps) do words[i] = q(s) end
  local r = sh("python3 " .. q(driver) .. " " .. q(prog) .. " " ..
               table.concat(words, " "))
  assert.are.equal(0, r.code, "python3 with pty failed: " .. (r.err or ""))
  return r.out
end

-- Type each line after the prompt has come (the terminal is set for the
-- line by then): the prompt after the n-th line is the (n+1)-th.
local function typing (lines)
  local steps = {}
  for i, l in ipairs(lines) do
    steps[#steps + 1] = "expect:" .. i .. ":> "
    steps[#steps + 1] = "send:" .. l
  end
  steps[#steps + 1] = "expect:" .. #lines + 1 .. ":> "
  steps[#steps + 1] = "send:\\x04"
  return steps
end

local readline = linked(BIN, "libreadline")

describe("the REPL with readline", function ()

  -- Without readline these cannot pass: say why, and fail where the
  -- Makefile should have found it.
  local function need_readline ()
    if readline then return true end
    assert.is_nil(io.open("/usr/include/readline/readline.h"),
                  "readline.h is installed, but cfut is not linked with " ..
                  "libreadline")
    pending("cfut was built without readline (no libreadline-dev)")
    return false
  end

  it("recalls the previous line with the up-arrow key", function ()
    if not need_readline() then return end
    local out = drive(BIN, typing{
      'n = (n or 0) + 1 print("n=" .. n)\\r', "\\x1b[A\\r" })
    assert.is_truthy(out:find("n=1\r\n", 1, true), out)
    assert.is_truthy(out:find("n=2\r\n", 1, true), out)
    assert.is_nil(out:find("bad binary format", 1, true), out)
  end)

  it("keeps a chunk of several lines as one history entry", function ()
    if not need_readline() then return end
    local steps = typing{ "m = (m or 0) +\\r", "1 print('m=' .. m)\\r",
                          "\\x1b[A\\r" }
    -- The second line comes after the >> prompt, not a third "> ".
    steps[3] = "expect:1:>> "
    steps[7] = "expect:2:m="
    local out = drive(BIN, steps)
    assert.is_truthy(out:find("m=1\r\n", 1, true), out)
    assert.is_truthy(out:find("m=2\r\n", 1, true), out)
  end)

  it("shows on a terminal what lua5.4 shows", function ()
    if not need_readline() then return end
    -- (No typed text contains the prompt "T$ ", so it can be counted.)
    local steps = {
      "expect:1:> ", "send:mt = { __tostring = function () " ..
        "return 'T' .. '$ ' end }\\r",
      "expect:2:> ", "send:_PROMPT = setmetatable({}, mt)\\r",
      "expect:1:T$ ", "send:1 + 1\\r",
      "expect:2:T$ ", "send:\\x1b[A\\x7f2\\r",
      "expect:3:T$ ", "send:error('x')\\r",
      "expect:4:T$ ", "send:\\x04" }
    local mine, lua = drive(BIN, steps), drive("/usr/bin/lua5.4", steps)
    assert.matches("\r\n2\r\n", mine)
    assert.matches("\r\n3\r\n", mine)
    assert.matches("T%$ ", mine)
    assert.are.equal(transcript(lua), transcript(mine))
  end)

  it("prints what lua5.4 -i prints for input from a file", function ()
    if not need_readline() then return end
    for _, input in ipairs{
      "x = 1\nprint(x)\n=x\n",
      "function f ()\nreturn 7\nend\nf()\n",
      "error('oops')\nprint('after')\nerror({})\n",
      "_PROMPT = setmetatable({}, { __tostring = function () return 'T> '" ..
        " end }) _PROMPT2 = 42\nx = 1 +\n2\nx\n",
      "\n\n1, nil, 'a'\n",
    } do
      local mine, lua = sh(q(BIN) .. " -i", input), sh("lua5.4 -i", input)
      assert.are.equal(transcript(lua.out), transcript(mine.out), input)
      assert.are.equal(lua.err, mine.err, input)
      assert.are.equal(lua.code, mine.code, input)
    end
  end)
end)

describe("the REPL without readline (READLINE=no)", function ()
  -- The plain host, linked from the build tree's objects.
  local plain = tmp .. "/plain"

  setup(function ()
    assert(os.execute("mkdir -p " .. q(plain)))
    local r = sh("make -s -C " .. q(ROOT) .. " READLINE=no OUT=" ..
                 q(plain) .. " " .. q(plain .. "/cfut"))
    assert.are.equal(0, r.code, r.err)
  end)

  it("is not linked with readline", function ()
    assert.is_false(linked(plain .. "/cfut", "libreadline"))
  end)

  it("prompts and prints without echoing the lines", function ()
    local r = sh(q(plain .. "/cfut") .. " -i",
                 "x = 5\nfunction f ()\nreturn x\nend\nf()\n")
    assert.are.equal(0, r.code)
    assert.are.equal("> > >> >> > 5\n> \n", transcript(r.out))
  end)

  it("reads a line longer than its buffer whole", function ()
    local long = "return '" .. ("y"):rep(3000) .. "'"
    local r = sh(q(plain .. "/cfut") .. " -i", long .. "\n")
    assert.are.equal("> " .. ("y"):rep(3000) .. "\n> \n", transcript(r.out))
    assert.are.equal("", r.err)
  end)

  it("works on a terminal", function ()
    local out = drive(plain .. "/cfut", typing{ "print(6 * 7)\\r" })
    assert.matches("> print%(6 %* 7%)\r\n42\r\n> ", out)
  end)
end)
