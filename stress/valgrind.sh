#!/bin/sh
# stress/valgrind.sh: the spec suite under valgrind's memcheck (make
# valgrind).  The host ./cfut runs busted; process-pool workers, which the
# host starts from /proc/self/exe, run under valgrind too
# (--trace-children); the shells, timeout(1) and other tools the specs
# start are skipped, and so is what they start (the cfut children of
# helpers.run, whose leaks the ASan suite checks).
#
# Lua states use the C library's allocator here (CFUT_SYSALLOC=1), not
# cfut's slab heap, so that memcheck sees every Lua object.
#
# Each process writes its own log; the run fails if any log shows an error
# or a definitely lost block, or if the suite does not finish (see the end
# for the suite's failures).  Usage:
#   stress/valgrind.sh [busted arguments, e.g. spec/future_spec.lua]
# Environment: CFUT_VG_LOGS (directory for the logs, default a new one
# under /tmp), CFUT_VG_SUPP (extra suppressions file).
set -u
cd "$(dirname "$0")/.." || exit 2

logs=${CFUT_VG_LOGS:-$(mktemp -d /tmp/cfut-vg.XXXXXX)}
mkdir -p "$logs"
rm -f "$logs"/vg.*.log
supp=""
[ -n "${CFUT_VG_SUPP:-}" ] && supp="--suppressions=$CFUT_VG_SUPP"

root=$(pwd)
busted=$(command -v busted) || { echo "busted not found"; exit 2; }
[ $# -gt 0 ] || set -- --exclude-pattern=^mpi_pool spec   # (MPI: make test-mpi)

start=$(date +%s)
{ env LUA_PATH="$root/lua/?.lua;$root/spec/?.lua;;" \
    LUA_CPATH="$root/?.so;;" CFUT_BIN="$root/cfut" CFUT_ROOT="$root" \
    CFUT_SANITIZED=1 CFUT_VALGRIND=1 CFUT_SYSALLOC=1 \
  valgrind --quiet --leak-check=full --show-leak-kinds=definite \
    --errors-for-leak-kinds=definite --error-exitcode=87 \
    --trace-children=yes \
    --trace-children-skip='/bin/*,/usr/bin/*,/sbin/*,/usr/sbin/*,*/sh' \
    --num-callers=30 --log-file="$logs/vg.%p.log" $supp \
    "$root/cfut" "$busted" "$@"
  echo $? >"$logs/suite.rc"; } 2>&1 | tee "$logs/suite.out"
rc=$(cat "$logs/suite.rc")
end=$(date +%s)

nlogs=$(ls "$logs"/vg.*.log 2>/dev/null | wc -l)
# With --quiet a clean process writes nothing; any text is a finding.
bad=$(find "$logs" -name 'vg.*.log' -size +0c | sort)
for f in $bad; do
  echo "=== $f"
  cat "$f"
done
lost=$(cat "$logs"/vg.*.log 2>/dev/null |
       sed -nE 's/.* ([0-9,]+) (\([0-9,]+ direct, [0-9,]+ indirect\) )?bytes in [0-9,]+ blocks are definitely lost.*/\1/p' |
       tr -d , | awk '{ s += $1 } END { print s + 0 }')
echo "valgrind: $nlogs processes checked in $((end - start)) s;" \
     "$(echo $bad | wc -w) with findings; definitely lost: $lost bytes"
echo "valgrind: logs in $logs"
# Specs that time things (a 0.2 s timeout that a worker must beat) can fail
# under valgrind, which is some 30x slower: the suite's failures are
# shown but only fail this run with CFUT_VG_STRICT=1.  A suite that did
# not finish (a crash) always fails it.
summary=$(grep -aE '^[0-9]+ successes? / [0-9]+ failures?' "$logs/suite.out" |
          tail -n 1)
echo "valgrind: suite (exit $rc): ${summary:-did not finish}"
[ -z "$bad" ] && [ -n "$summary" ] &&
  { [ "$rc" -eq 0 ] || [ "${CFUT_VG_STRICT:-0}" != 1 ]; }
