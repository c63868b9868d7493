-- cfut-scm-1.rockspec: `luarocks make --lua-version 5.4` in a checkout
-- builds with the Makefile (make all) and installs the module cfut.so and
-- the host program cfut into the tree; the module's Lua parts are compiled
-- into both.  Linux only, Lua 5.4 only.
rockspec_format = "3.0"
package = "cfut"
version = "scm-1"

-- `luarocks make` builds the checkout it runs in and fetches nothing.
-- `luarocks install` of this rockspec fetches the url: set it to the
-- project's repository when publishing.
source = {
  url = "git+https://example.invalid/cfut.git",
}

description = {
  summary = "concurrent.futures for Lua 5.4: thread and process pools",
  detailed = [[
Thread pools (one Lua state per OS thread), process pools, futures, wait
and as_completed, modelled on Python's concurrent.futures; a marshaller
copies values between states and processes.  The rock installs the module
(require "cfut", also in the stock lua5.4) and the cfut program, a lua5.4
with the module built in.  Linux only, Lua 5.4 only.]],
  labels = { "concurrency", "threads", "processes" },
}

supported_platforms = { "linux" }

dependencies = {
  "lua >= 5.4, < 5.5",
}

build = {
  type = "make",
  build_target = "all",
  build_variables = {
    CC = "$(CC)",
    LUA_CFLAGS = "-I$(LUA_INCDIR)",
    -- The plain build, whatever a surrounding make exported (make asan
    -- runs the specs with OUT=build-asan in the environment).
    B = "build", OUT = ".", OPT = "-O2 -g", EXTRA_CFLAGS = "",
    EXTRA_LDFLAGS = "",
  },
  -- make install knows nothing of a rock's layout: the files are listed
  -- here instead.
  install_pass = false,
  install = {
    bin = { cfut = "cfut" },
    lib = { cfut = "cfut.so" },
  },
  copy_directories = { "docs" },
}
