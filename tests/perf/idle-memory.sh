#!/usr/bin/env bash
# Goal: an idle proxied connection costs kaproxy at most 1 KiB of user-space
# memory (both legs, all state).  2,000 connections are opened through
# kaproxy and held idle; the growth of kaproxy's RSS divided by the count
# must stay at or below 1.0 KiB.  Loopback only; ports 62810-62811.
set -euo pipefail
kaproxy=${1:?usage: idle-memory.sh KAPROXY}
here=$(cd "$(dirname "$0")/../.." && pwd)
n=2000
command -v cc >/dev/null || { echo "no C compiler: skipped"; exit 77; }
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge $((2 * n + 200)) ] || { echo "fd limit $(ulimit -n) too low: skipped"; exit 77; }

cc -O2 -pthread -o "$dir/loadgen" "$here/bench/loadgen.c"
cat >"$dir/k.ini" <<INI
[global]
access_log = off
admin_listen = off
log_level = warn
[listener idle]
listen = 127.0.0.1:62811
upstream = 127.0.0.1:62810
INI

"$dir/loadgen" server -p 62810 -t 1 & pids+=($!)
"$kaproxy" -c "$dir/k.ini" & kp=$!; pids+=($kp)
"$dir/loadgen" wait -p 62810 -T 5000
"$dir/loadgen" wait -p 62811 -T 5000
out=$("$dir/loadgen" idle -n "$n" -P "$kp" -S 500 -p 62811)
echo "$out"
per=$(printf '%s\n' "$out" | sed -n 's/.*rss_kib_per_conn=\([0-9.]*\).*/\1/p')
opened=$(printf '%s\n' "$out" | sed -n 's/.*opened=\([0-9]*\).*/\1/p')
[ "$opened" = "$n" ] || { echo "FAIL: only $opened of $n connections opened"; exit 1; }
awk -v p="$per" 'BEGIN { exit !(p != "" && p <= 1.0) }' ||
	{ echo "FAIL: $per KiB per idle connection (limit 1.0)"; exit 1; }
echo "idle memory: $per KiB per connection over $n connections (limit 1.0)"
