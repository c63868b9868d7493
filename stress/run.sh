#!/bin/sh
# stress/run.sh: the long runs of issue 4 (make stress).
#   1. stress/million.lua: 1 000 000 tasks through the thread pool and
#      through the process pool, every result checked, VmRSS printed and
#      bounded (growth after the warm-up under 10 MB).
#   2. spec/reliability_spec.lua with the long settings: the kill storm
#      (CFUT_KILL_ROUNDS, default 2000 rounds) and the executor churn
#      (CFUT_CHURN_THREADS / CFUT_CHURN_PROCS, default 10 000 each).
# Prints the figures; exits non-zero if anything failed.  Each part runs
# under timeout(1), so nothing can hang the run.
set -u
cd "$(dirname "$0")/.." || exit 2
root=$(pwd)
export LUA_PATH="$root/lua/?.lua;$root/spec/?.lua;;"
export LUA_CPATH="$root/?.so;;"
export CFUT_BIN="$root/cfut" CFUT_ROOT="$root"
: "${CFUT_KILL_ROUNDS:=2000}" "${CFUT_CHURN_THREADS:=10000}"
: "${CFUT_CHURN_PROCS:=10000}"
export CFUT_KILL_ROUNDS CFUT_CHURN_THREADS CFUT_CHURN_PROCS
export CFUT_STORM_REPORT=1
busted=$(command -v busted) || { echo "busted not found"; exit 2; }

rc=0
t0=$(date +%s)
echo "== stress/million.lua (1 000 000 tasks per pool)"
timeout -k 5 900 ./cfut stress/million.lua 1000000 both || rc=1
echo "== reliability specs: $CFUT_KILL_ROUNDS kill rounds, " \
     "$CFUT_CHURN_THREADS thread pools, $CFUT_CHURN_PROCS process pools"
timeout -k 5 3600 lua5.4 "$busted" -o utfTerminal spec/reliability_spec.lua \
  || rc=1
verdict=PASS
[ $rc -eq 0 ] || verdict=FAIL
echo "== stress: $(( $(date +%s) - t0 )) s, $verdict"
exit $rc
