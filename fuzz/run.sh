#!/bin/sh
# run.sh: run the fuzz targets built in build-fuzz/ one after the other.
#   sh fuzz/run.sh runs N target...   N executions in all, shared by weight
#   sh fuzz/run.sh time S target...   S seconds in all, shared equally
# New inputs go to build-fuzz/corpus/<target>/ (kept between runs), the
# seeds (made by the encoder, fuzz/seeds.lua) to build-fuzz/seeds/.
# Prints each target's execution count and rate; exits 1 on any finding
# (crash, leak, sanitizer report, failed property), whose input is left
# in build-fuzz/findings/.
set -u
mode=$1 amount=$2
shift 2
B=build-fuzz
NICE=${FUZZ_NICE-nice}
mkdir -p $B/findings $B/logs
rm -rf $B/seeds
./cfut fuzz/seeds.lua $B/seeds || exit 2

weight () {      # share of the executions, in percent
  case $1 in decode) echo 45 ;; frame) echo 35 ;; check) echo 15 ;;
    *) echo 5 ;; esac
}

maxlen () {
  # check: its seeds hold messages of several MiB (fuzz/seeds.lua)
  case $1 in roundtrip) echo 2048 ;; check) echo 4194304 ;;
    *) echo 16384 ;; esac
}

n=$# total=0 failed="" secs=0
for t in "$@"; do
  mkdir -p $B/corpus/$t
  if [ "$mode" = runs ]; then
    limit="-runs=$((amount / 100 * $(weight $t)))"
  else
    limit="-max_total_time=$((amount / n))"
  fi
  log=$B/logs/$t.log
  start=$(date +%s)
  UBSAN_OPTIONS=print_stacktrace=1 $NICE ./$B/fuzz_$t $limit \
    -max_len=$(maxlen $t) -print_final_stats=1 -timeout=20 \
    -artifact_prefix=$B/findings/$t- $B/corpus/$t $B/seeds/$t >"$log" 2>&1
  rc=$?
  took=$(( $(date +%s) - start ))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  echo "fuzz $t: ${runs:-?} executions in ${took} s (${rate:-?} exec/s)," \
       "exit $rc"
  total=$((total + ${runs:-0}))
  secs=$((secs + took))
  if [ "$rc" -ne 0 ]; then
    failed="$failed $t"
    grep -E 'ERROR|SUMMARY|property failed|runtime error' "$log" | head -n 20
    echo "(full log: $log)"
  fi
done
echo "fuzz: $total executions in all, ${secs} s"
[ -z "$failed" ] || { echo "fuzz: findings in:$failed"; exit 1; }
