#!/bin/sh
# bench/icount.sh TREE WORKLOAD N [BASE]: instructions per task (per record
# for t4/p4) of one workload of bench/icount.lua, run by the cfut built in
# TREE (a checkout after `make`), counted by valgrind's callgrind over every
# thread and every worker process: (count with N - count with BASE) / N.
# BASE is 0 by default (for t4/p4 use N=1 BASE=0 for a trip on a warm
# thread, N=0 BASE=-1 for the first trip).  Counts move by well under 1 %
# from run to run, whatever else the machine does, where timings move by
# 10-50 %; compare builds with it.
set -eu
tree=$(cd "$1" && pwd); w=$2; n=$3; base=${4:-0}
script=$(cd "$(dirname "$0")" && pwd)/icount.lua
tmp=$(mktemp -d "${TMPDIR:-/tmp}/icount.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
count () {
  # The Lua parts of an old tree are files in lua/ (LUA_PATH); a new one
  # has them compiled in.
  env LUA_PATH="$tree/lua/?.lua;;" LUA_CPATH="$tree/?.so;;" \
    valgrind --tool=callgrind --trace-children=yes \
    --callgrind-out-file="$tmp/cg.%p" "$tree/cfut" "$script" "$w" "$1" \
    >"$tmp/log" 2>&1 || { cat "$tmp/log" >&2; exit 1; }
  sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p' "$tmp/log" |
    awk '{ s += $1 } END { print s }'
  rm -f "$tmp"/cg.*
}
a=$(count "$base"); b=$(count "$n")
echo "$w $(( (b - a) / (n - base) ))"
