# cfut: a concurrent.futures for Lua 5.4.
#
#   make          build the host ./cfut and the module ./cfut.so
#   make demo     install what is missing, build, run every example
#   make test     install what is missing, build, run the spec suite
#   make mpi      also build the MPI pool's module cfut/mpi.so (Open MPI)
#   make test-mpi the MPI pool's specs (installs Open MPI)
#   make asan     the spec suite under ASan + UBSan   (build-asan/)
#   make tsan     the spec suite under TSan           (build-tsan/)
#   make asan-mpi the MPI specs under ASan + UBSan      (build-asan/)
#   make tsan-mpi the MPI specs under TSan              (build-tsan/)
#   make failalloc  scenarios failing every n-th allocation (build-failalloc/)
#   make bench    cfut next to Python and luv, same run
#   make stress   a million tasks per pool, the long kill storm, churn
#   make valgrind the spec suite under valgrind's memcheck
#   make fuzz     the libFuzzer campaign, FUZZ_RUNS runs in all (build-fuzz/)
#   make fuzz-short   every fuzz target for a bounded time (CI)
#   make install PREFIX=/usr/local DESTDIR=   /   make uninstall

PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR   = $(PREFIX)/bin
LMODDIR  = $(PREFIX)/lib/lua/5.4
LLUADIR  = $(PREFIX)/share/lua/5.4
MANDIR   = $(PREFIX)/share/man/man1
DATADIR  = $(PREFIX)/share/cfut

CC      ?= gcc
LUA_CFLAGS := $(shell pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)
WARN     = -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes
OPT     ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -fPIC -pthread $(LUA_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS += -pthread $(EXTRA_LDFLAGS)

# Library objects: everything but the host's main.
LIBSRC  = src/lcfut.c src/lfuture.c src/lmap.c src/future.c src/executor.c \
          src/tpool.c src/ppool.c src/pworker.c src/worker.c src/marshal.c src/mglobals.c src/unmarshal.c src/undeep.c src/mdeep.c \
          src/seenmap.c src/bigmem.c src/mnames.c src/globals.c src/wpath.c \
          src/sys.c src/heap.c src/failalloc.c src/lbar.c src/lloop.c
HOSTSRC = src/cfut.c
HDRS    = $(wildcard src/*.h)

B      ?= build
LIBOBJ  = $(LIBSRC:src/%.c=$(B)/%.o) $(B)/luaparts.o

# GNU readline for the REPL (line editing, history) when its header is
# found; READLINE=no builds the plain fallback.  Each kind has its own
# object, so both can be built from one tree.
ifndef READLINE
READLINE := $(shell printf '\#include <stdio.h>\n\#include <readline/readline.h>\n' \
              | $(CC) -E -x c - >/dev/null 2>&1 && echo yes || echo no)
endif
ifeq ($(READLINE),yes)
HOSTOBJ  = $(B)/cfut-readline.o
HOSTLIBS = -lreadline
else
HOSTOBJ  = $(HOSTSRC:src/%.c=$(B)/%.o)
HOSTLIBS =
endif
OUT    ?= .

LUAFILES = $(sort $(wildcard lua/cfut/*.lua))
# (futures_mpi_pool.lua needs cfut/mpi.so: make test-mpi runs it.)
EXAMPLES = $(filter-out examples/futures_mpi_pool.lua,$(sort $(wildcard examples/*.lua)))

# Run busted with the 5.4 interpreter whatever the `lua` alternative says.
BUSTED   = lua5.4 $$(command -v busted)
# The MPI pool's specs need MPI: only `make test-mpi` runs them.
NOMPI    = --exclude-pattern=^mpi_pool
TESTENV  = LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/spec/?.lua;;" \
           LUA_CPATH="$(CURDIR)/$(OUT)/?.so;;" \
           CFUT_BIN="$(CURDIR)/$(OUT)/cfut" CFUT_ROOT="$(CURDIR)"

.PHONY: FORCE all mpi setup-mpi test-mpi asan-mpi tsan-mpi sanspec-mpi setup setup-rocks setup-bench setup-fuzz demo test spec asan tsan failalloc bench \
        fuzz fuzz-short fuzz-build fuzz-bins stress valgrind install uninstall clean

all: $(OUT)/cfut $(OUT)/cfut.so

$(B)/%.o: src/%.c $(HDRS) | $(B)
	$(CC) $(CFLAGS) -c $< -o $@

$(B):
	mkdir -p $(B)

# The Lua parts of the module, compiled in (src/luaparts.h).
$(B)/luaparts.c: src/embed.sh $(LUAFILES) | $(B)
	sh src/embed.sh $@ $(LUAFILES)

$(B)/luaparts.o: $(B)/luaparts.c src/luaparts.h
	$(CC) $(CFLAGS) -Isrc -c $< -o $@

# The module takes the Lua API from whichever program loads it: never link
# -llua5.4 here (Debian's lua5.4 has the core built in; a second core in one
# process corrupts memory).
$(OUT)/cfut.so: $(LIBOBJ)
	$(CC) -shared -o $@ $(LIBOBJ) $(LDFLAGS)

# The host exports the Lua API (-Wl,-E) so C modules loaded by scripts bind
# to the same core.
$(OUT)/cfut: $(HOSTOBJ) $(LIBOBJ) $(B)/readline.stamp
	$(CC) -o $@ $(HOSTOBJ) $(LIBOBJ) -Wl,-E $(LDFLAGS) -llua5.4 $(HOSTLIBS) -lm -ldl

$(B)/cfut-readline.o: src/cfut.c $(HDRS) | $(B)
	$(CC) $(CFLAGS) -DCFUT_READLINE -c $< -o $@

# Changes (and so relinks the host) only when READLINE does.
$(B)/readline.stamp: FORCE | $(B)
	@echo $(READLINE) | cmp -s - $@ || echo $(READLINE) >$@

FORCE:

# The MPI pool's module cfut/mpi.so (docs/mpi.md): built only here, with
# the distribution's Open MPI (or MPICH: MPICC=mpicc.mpich), so that
# everything else builds and runs without MPI.  It takes the Lua API from
# the program that loads it, like cfut.so.
MPICC   ?= mpicc
MPIENV   = OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
           OMPI_MCA_rmaps_base_oversubscribe=1

setup-mpi: setup
	@sh .ci/setup.sh mpicc:libopenmpi-dev mpiexec:openmpi-bin

# (In lib/: ./cfut is the host, so the module cannot be ./cfut/mpi.so.)
MPISO    = $(OUT)/lib/cfut/mpi.so
MPITESTENV = $(TESTENV) LUA_CPATH="$(CURDIR)/$(OUT)/?.so;$(CURDIR)/$(OUT)/lib/?.so;;" $(MPIENV)

mpi: all $(MPISO)

$(MPISO): src/mpi.c src/ppool.h src/executor.h src/future.h src/wire.h
	@mkdir -p $(OUT)/lib/cfut
	$(MPICC) -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -fPIC -pthread \
	  $(LUA_CFLAGS) $(EXTRA_CFLAGS) -Isrc -shared -o $@ src/mpi.c \
	  $(EXTRA_LDFLAGS) -ldl

# The MPI pool's specs (spawn and static modes), apart from make test: they
# need MPI installed.  The root and oversubscribe settings are the test
# machine's (CI runs as root on 2 cores), never the library's.
test-mpi: setup-mpi setup-rocks
	@$(MAKE) --no-print-directory mpi
	$(MPITESTENV) $(BUSTED) $(BUSTED_ARGS) spec/mpi_pool_spec.lua
	$(MPITESTENV) timeout -k 5 600 mpiexec -n 4 ./$(OUT)/cfut -l cfut.mpi \
	  $$(command -v busted) $(BUSTED_ARGS) spec/mpi_pool_static_spec.lua
	$(MPITESTENV) ./$(OUT)/cfut examples/futures_mpi_pool.lua
	$(MPITESTENV) mpiexec -n 3 ./$(OUT)/cfut -l cfut.mpi examples/futures_mpi_pool.lua

# The MPI specs with src/mpi.c and the host under ASan + UBSan (docs/mpi.md,
# "Tests").  Open MPI is not built with the sanitizers: what it keeps until
# exit is suppressed by library (test/mpisan/lsan.supp), which LSan can only
# name while its components stay loaded (nodlclose.so) and with full stacks.
MPISAN_ENV = LD_PRELOAD="$(CURDIR)/build-asan/nodlclose.so" \
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86:verify_asan_link_order=0:fast_unwind_on_malloc=0:malloc_context_size=8 \
  LSAN_OPTIONS=suppressions="$(CURDIR)/test/mpisan/lsan.supp":print_suppressions=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

asan-mpi: setup-mpi setup-rocks
	@$(MAKE) --no-print-directory B=build-asan OUT=build-asan OPT="-O1 -g" \
	  EXTRA_CFLAGS="$(ASAN_FLAGS)" EXTRA_LDFLAGS="$(ASAN_FLAGS)" mpi
	$(CC) -shared -fPIC -o build-asan/nodlclose.so test/mpisan/nodlclose.c
	$(MPISAN_ENV) $(MAKE) --no-print-directory OUT=build-asan sanspec-mpi

# The same under TSan; Open MPI's own lock-order report is suppressed
# (test/mpisan/tsan.supp).
tsan-mpi: setup-mpi setup-rocks
	@$(MAKE) --no-print-directory B=build-tsan OUT=build-tsan OPT="-O1 -g" \
	  EXTRA_CFLAGS="$(TSAN_FLAGS)" EXTRA_LDFLAGS="$(TSAN_FLAGS)" mpi
	TSAN_OPTIONS="halt_on_error=1 exitcode=86 second_deadlock_stack=1 suppressions=$(CURDIR)/test/mpisan/tsan.supp" \
	  $(MAKE) --no-print-directory OUT=build-tsan sanspec-mpi

sanspec-mpi:
	$(MPITESTENV) CFUT_SANITIZED=1 $(OUT)/cfut $$(command -v busted) $(BUSTED_ARGS) spec/mpi_pool_spec.lua
	$(MPITESTENV) CFUT_SANITIZED=1 timeout -k 5 600 mpiexec -n 4 $(OUT)/cfut -l cfut.mpi \
	  $$(command -v busted) $(BUSTED_ARGS) spec/mpi_pool_static_spec.lua

# Install what is missing from Debian's packages (through sudo when not root).
setup:
	@sh .ci/setup.sh lua5.4:lua5.4 /usr/include/lua5.4/lua.h:liblua5.4-dev busted:lua-busted pkg-config:pkg-config /usr/bin/python3:python3 \
	  /usr/include/readline/readline.h:libreadline-dev groff:groff-base man:man-db strace:strace \
	  /usr/lib/x86_64-linux-gnu/lua/5.4/luv.so:lua-luv

# luarocks, for spec/rock_spec.lua (make test and the other spec suites).
# Debian's luarocks pulls lua5.1 in, which takes the `lua` and `luac`
# alternatives over: put back the ones that were there (5.4 if none).
setup-rocks:
	@command -v luarocks >/dev/null 2>&1 || { \
	  lua=$$(readlink -f /usr/bin/lua 2>/dev/null || true); \
	  luac=$$(readlink -f /usr/bin/luac 2>/dev/null || true); \
	  sh .ci/setup.sh luarocks:luarocks || exit 1; \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  [ "$$(readlink -f /usr/bin/lua)" = "$${lua:=/usr/bin/lua5.4}" ] || \
	    $$sudo update-alternatives --set lua-interpreter "$$lua"; \
	  [ "$$(readlink -f /usr/bin/luac)" = "$${luac:=/usr/bin/luac5.4}" ] || \
	    $$sudo update-alternatives --set lua-compiler "$$luac"; \
	}

setup-bench: setup
	@sh .ci/setup.sh /usr/lib/x86_64-linux-gnu/lua/5.4/luv.so:lua-luv

# clang and its libFuzzer runtime, for the fuzz targets.
setup-fuzz: setup
	@sh .ci/setup.sh clang:clang \
	  /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a:libclang-rt-14-dev

demo: setup
	@$(MAKE) --no-print-directory all
	@set -e; for ex in $(EXAMPLES); do \
	  echo "== $$ex"; $(TESTENV) ./cfut $$ex; echo; done

spec: all
	$(TESTENV) $(BUSTED) $(NOMPI) $(BUSTED_ARGS) spec

test: setup setup-rocks
	@$(MAKE) --no-print-directory spec

# Sanitizer suites: the whole spec suite run by the sanitized host (busted is
# a Lua script, and cfut runs Lua scripts like lua5.4 does).
ASAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
TSAN_FLAGS = -fsanitize=thread -fno-omit-frame-pointer

asan: setup setup-rocks
	@$(MAKE) --no-print-directory B=build-asan OUT=build-asan OPT="-O1 -g" \
	  EXTRA_CFLAGS="$(ASAN_FLAGS)" EXTRA_LDFLAGS="$(ASAN_FLAGS)" all
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(MAKE) --no-print-directory OUT=build-asan sanspec

tsan: setup setup-rocks
	@$(MAKE) --no-print-directory B=build-tsan OUT=build-tsan OPT="-O1 -g" \
	  EXTRA_CFLAGS="$(TSAN_FLAGS)" EXTRA_LDFLAGS="$(TSAN_FLAGS)" all
	TSAN_OPTIONS="halt_on_error=1 exitcode=86 second_deadlock_stack=1" \
	  $(MAKE) --no-print-directory OUT=build-tsan sanspec

# The failing-allocator build (docs/failalloc.md): ASan + UBSan, and every
# allocation through src/failalloc.c.  FAILALLOC_STEP=k tries every k-th n
# after the first 200 (the CI run); FAILALLOC_ARGS picks scenarios.
FA_FLAGS = $(ASAN_FLAGS) -DCFUT_FAILALLOC -include src/failalloc.h

failalloc: setup
	@$(MAKE) --no-print-directory B=build-failalloc OUT=build-failalloc \
	  OPT="-O1 -g" EXTRA_CFLAGS="$(FA_FLAGS)" EXTRA_LDFLAGS="$(ASAN_FLAGS)" all
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(MAKE) --no-print-directory OUT=build-failalloc farun

farun:
	$(TESTENV) sh test/failalloc/run.sh $(FAILALLOC_ARGS)

sanspec:
	$(TESTENV) CFUT_SANITIZED=1 $(OUT)/cfut $$(command -v busted) $(NOMPI) $(BUSTED_ARGS) spec

bench: setup-bench
	@$(MAKE) --no-print-directory all
	@sh bench/run.sh

# The long runs of issue 4 (docs/reliability.md): stress/million.lua for
# each pool, then the reliability specs with 2000 kill rounds and 10 000
# executors of each kind.
stress: setup
	@$(MAKE) --no-print-directory all
	@sh stress/run.sh

# The spec suite under valgrind (workers too); see stress/valgrind.sh.
valgrind: setup setup-rocks
	@sh .ci/setup.sh valgrind:valgrind
	@$(MAKE) --no-print-directory all
	@sh stress/valgrind.sh

# Fuzzing (fuzz/README.md): the library objects built by clang with ASan +
# UBSan and coverage, linked into one standalone program per target.
FUZZ_TARGETS = decode frame roundtrip check
FUZZ_FLAGS   = -fsanitize=address,undefined -fno-sanitize-recover=undefined \
               -fno-omit-frame-pointer
FUZZ_RUNS   ?= 10000000
FUZZ_TIME   ?= 60

fuzz-build: setup-fuzz
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory B=build-fuzz/obj CC=clang OPT="-O1 -g" \
	  EXTRA_CFLAGS="$(FUZZ_FLAGS) -fsanitize=fuzzer-no-link" \
	  EXTRA_LDFLAGS="$(FUZZ_FLAGS) -fsanitize=fuzzer" fuzz-bins

fuzz-bins: $(FUZZ_TARGETS:%=build-fuzz/fuzz_%)

build-fuzz/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz.h $(LIBOBJ)
	$(CC) $(CFLAGS) -Isrc -o $@ $< $(LIBOBJ) $(LDFLAGS) -llua5.4 -lm -ldl

fuzz: fuzz-build
	@sh fuzz/run.sh runs $(FUZZ_RUNS) $(FUZZ_TARGETS)

fuzz-short: fuzz-build
	@sh fuzz/run.sh time $(FUZZ_TIME) $(FUZZ_TARGETS)

# install records in $(DATADIR)/installed-dirs the directories it had to
# make, so that uninstall removes those (once empty) and no others.
INSTDIRS = $(BINDIR) $(LMODDIR) $(MANDIR) $(DATADIR)
MANIFEST = $(DESTDIR)$(DATADIR)/installed-dirs

install: all
	@set -e; made=""; \
	for d in $(INSTDIRS); do \
	  p=""; \
	  for c in $$(echo "$$d" | tr / ' '); do \
	    p="$$p/$$c"; \
	    if [ ! -d "$(DESTDIR)$$p" ]; then \
	      mkdir -p "$(DESTDIR)$$p"; made="$$made $$p"; \
	    fi; \
	  done; \
	done; \
	for p in $$made; do echo "$$p"; done >>"$(MANIFEST)"
	install -m 755 cfut $(DESTDIR)$(BINDIR)/cfut
	install -m 755 cfut.so $(DESTDIR)$(LMODDIR)/cfut.so
	install -m 644 docs/cfut.1 $(DESTDIR)$(MANDIR)/cfut.1

# (The Lua files of earlier versions, which installed them, go too.)
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/cfut $(DESTDIR)$(LMODDIR)/cfut.so \
	  $(DESTDIR)$(MANDIR)/cfut.1
	rm -f $(addprefix $(DESTDIR)$(LLUADIR)/cfut/,$(notdir $(LUAFILES)))
	@rmdir $(DESTDIR)$(LLUADIR)/cfut 2>/dev/null || true
	@if [ -f "$(MANIFEST)" ]; then \
	  dirs=$$(sort -r "$(MANIFEST)"); rm -f "$(MANIFEST)"; \
	  for d in $$dirs; do rmdir "$(DESTDIR)$$d" 2>/dev/null || true; done; \
	fi

clean:
	rm -rf build build-asan build-tsan build-failalloc build-fuzz cfut cfut.so lib/cfut/mpi.so
