#!/bin/sh
# run.sh: the failing-allocation driver (docs/failalloc.md).  Runs each
# scenario with CFUT_FAILAT=n for n = 1, 2, 3... until a run no longer
# reaches the failing allocation, under the failalloc build of the host
# ($CFUT_BIN, built by `make failalloc`).
#
#   sh test/failalloc/run.sh [scenario[:mode[:where]]...]
#
# mode: all (the n-th and every later allocation fail; default) or once
# (only the n-th); where: host (default) or worker (process workers only).
# Environment: FAILALLOC_STEP=k tries n = 1..200, then every k-th n;
# FAILALLOC_TIMEOUT (seconds a run may take, default 60); FAILALLOC_MAX
# (the largest n, default 100000); FAILALLOC_FROM (the first n, default 1);
# FAILALLOC_KEEP=dir keeps the logs of failing runs.
#
# A run passes when it exits 0 with "FAILALLOC OK" or with "FAILALLOC
# ERROR:" and a message containing "not enough memory" (or, failing in
# process workers, BrokenProcessPool), and has no sanitizer report and no
# unresolved future.
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin=${CFUT_BIN:?CFUT_BIN: the failalloc host}
step=${FAILALLOC_STEP:-1}
tmo=${FAILALLOC_TIMEOUT:-60}
max=${FAILALLOC_MAX:-100000}
keep=${FAILALLOC_KEEP:-}
LUA_PATH="$here/?.lua;${LUA_PATH:-;}"
export LUA_PATH
unset CFUT_FAILAT CFUT_FAILMODE CFUT_FAILIN
[ -n "$keep" ] && mkdir -p "$keep"

if [ $# -eq 0 ]; then
  set -- submit map marshal poolstart callbacks process process:all:worker \
         globals submit:once map:once marshal:once poolstart:once \
         callbacks:once globals:once process:once process:once:worker
fi

out=$(mktemp)
err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
passes=0 fails=0

# Judge the run in $out/$err with exit status $1; prints why it failed.
judge () {
  rc=$1
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then echo "hang (timeout)"; return 1; fi
  if grep -qE 'Sanitizer|runtime error:|PANIC|Segmentation|Aborted' "$err"; then
    grep -m1 -E 'Sanitizer|runtime error:|PANIC' "$err"; return 1
  fi
  if grep -q '^FAILALLOC UNRESOLVED' "$out"; then
    grep -m1 '^FAILALLOC UNRESOLVED' "$out"; return 1
  fi
  if [ "$rc" -ne 0 ]; then echo "exit status $rc"; return 1; fi
  # Out of memory, either side sends whole frames or none.
  if grep -q '^FAILALLOC ERROR: .*malformed message' "$out"; then
    grep -m1 '^FAILALLOC ERROR' "$out"; return 1
  fi
  if grep -q '^FAILALLOC OK' "$out"; then return 0; fi
  if grep -q '^FAILALLOC ERROR: .*not enough memory' "$out"; then return 0; fi
  # A worker process that runs out of memory may die: its pool is broken.
  if [ "$where" = worker ] &&
     grep -q '^FAILALLOC ERROR: BrokenProcessPool: ' "$out"; then return 0; fi
  if grep -q '^FAILALLOC ERROR: callbacks ran' "$out" &&
     grep -q 'not enough memory' "$err"; then return 0; fi
  grep -m1 '^FAILALLOC ERROR' "$out" || echo "no outcome line"
  return 1
}

for spec in "$@"; do
  name=${spec%%:*}
  rest=${spec#"$name"}; rest=${rest#:}
  mode=${rest%%:*}; [ -n "$mode" ] || mode=all
  where=${rest#"$mode"}; where=${where#:}; [ -n "$where" ] || where=host
  from=${FAILALLOC_FROM:-1}
  n=$((from - 1)) tried=0 bad=0 t0=$(date +%s)
  while :; do
    if [ "$n" -lt 200 ] || [ "$step" -le 1 ]; then n=$((n + 1))
    else n=$((n + step)); fi
    [ "$n" -le "$max" ] || break
    tried=$((tried + 1))
    CFUT_FAILAT=$n CFUT_FAILMODE=$mode CFUT_FAILIN=$where \
      timeout -k 5 "$tmo" "$bin" "$here/$name.lua" >"$out" 2>"$err" </dev/null
    rc=$?
    if why=$(judge "$rc"); then
      passes=$((passes + 1))
      # Done once no process reached the failing allocation.
      grep -q 'failalloc: pid [0-9]* reached\|allocation [0-9]* reached' "$err" || break
    else
      fails=$((fails + 1)) bad=$((bad + 1))
      [ "$bad" -le 5 ] && echo "FAIL $spec n=$n: $why"
      [ -n "$keep" ] && cat "$out" "$err" >"$keep/$name-$mode-$where-$n.log"
    fi
  done
  echo "$spec: n = $from..$n ($tried runs, step $step), $bad failed," \
       "$(( $(date +%s) - t0 ))s"
done
echo "$passes successes / $fails failures / 0 errors"
[ "$fails" -eq 0 ]
