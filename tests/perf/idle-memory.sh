#!/usr/bin/env bash
# Goal: an idle proxied connection costs kaproxy at most 1 KiB of user-space
# memory (both legs, all state).  2,000 connections are opened through
# kaproxy and held idle; the growth of kaproxy's RSS divided by the count
# must stay at or below 1.0 KiB.  Measured twice: with the plainest
# configuration, and with every feature on (access log, progress records,
# admin and status endpoints, file watch, two workers, policies with user
# timeouts and NAT bounds on both legs, idle timeout, upstream recheck, live
# policy on reload, a PROXY header accepted from the client and one sent
# upstream).  In the second run the upstream is a second kaproxy that takes
# the PROXY header off, so the echo server sees plain bytes; only the first
# is measured.  Loopback only; ports 62810-62815.
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

# measure NAME PID PORT SETTLE_MS [LOADGEN-FLAGS]: hold $n connections for
# SETTLE_MS, then check what they cost.
measure() {
	local name=$1 pid=$2 port=$3 settle=$4 out per opened
	shift 4
	out=$("$dir/loadgen" idle -n "$n" -P "$pid" -S "$settle" -p "$port" "$@")
	echo "$name: $out"
	per=$(printf '%s\n' "$out" | sed -n 's/.*rss_kib_per_conn=\([0-9.]*\).*/\1/p')
	opened=$(printf '%s\n' "$out" | sed -n 's/.*opened=\([0-9]*\).*/\1/p')
	[ "$opened" = "$n" ] || { echo "FAIL: $name: only $opened of $n connections opened"; exit 1; }
	awk -v p="$per" 'BEGIN { exit !(p != "" && p <= 1.0) }' ||
		{ echo "FAIL: $name: $per KiB per idle connection (limit 1.0)"; exit 1; }
	echo "idle memory, $name: $per KiB per connection over $n connections (limit 1.0)"
}

measure plain "$kp" 62811 500
kill "$kp"
wait "$kp" 2>/dev/null || true

# Every feature on.  The relay strips the PROXY header kaproxy sends.
cat >"$dir/relay.ini" <<INI
[global]
access_log = off
admin_listen = off
log_level = warn
[listener relay]
listen = 127.0.0.1:62812
upstream = 127.0.0.1:62810
accept_proxy = on
INI
cat >"$dir/all.ini" <<INI
[global]
workers = 2
max_connections = 10000
log_level = info
access_log = $dir/access.log
admin_listen = 127.0.0.1:62814
status_listen = 127.0.0.1:62815
reload_on_change = on
shutdown_timeout = 5s
[defaults]
connect_timeout = 5s
idle_timeout = 1h
teardown = rst
log_interval = 1s
client_keepalive_idle = 30s
client_keepalive_interval = 5s
client_keepalive_count = 4
client_user_timeout = auto
client_nat_timeout = 350s
upstream_keepalive_idle = 60s
upstream_keepalive_interval = 10s
upstream_keepalive_count = 3
upstream_user_timeout = 90s
upstream_nat_timeout = 350s
reload_live_connections = apply
upstream_recheck_on_death = on
[listener all]
listen = 127.0.0.1:62813
upstream = 127.0.0.1:62812
accept_proxy = on
send_proxy = v2
INI
"$kaproxy" -c "$dir/relay.ini" & pids+=($!)
"$kaproxy" -c "$dir/all.ini" 2>"$dir/all.err" & kp=$!; pids+=($kp)
"$dir/loadgen" wait -p 62812 -T 5000 -x
"$dir/loadgen" wait -p 62813 -T 5000 -x
# Held 2.5 s: every connection is older than log_interval at two sweeps, so
# the memory is read after progress records were written for all of them.
measure "every feature on" "$kp" 62813 2500 -x
# The features were at work: the headers went through both proxies (the
# echo answered), progress records were written, both endpoints answer.
progress=$(grep -c '"event":"progress"' "$dir/access.log" || true)
[ "$progress" -ge "$n" ] ||
	{ echo "FAIL: $progress progress records for $n connections held 2.5 s"; exit 1; }
curl -sf --max-time 5 http://127.0.0.1:62815/healthz >/dev/null ||
	{ echo "FAIL: status_listen does not answer"; exit 1; }
# Read whole before grepping: under pipefail, grep -q leaving at the first
# match would make curl fail on the rest with EPIPE.
metrics=$(curl -sf --max-time 5 http://127.0.0.1:62814/metrics) ||
	{ echo "FAIL: admin /metrics does not answer"; exit 1; }
grep -q '^kaproxy_' <<<"$metrics" ||
	{ echo "FAIL: admin /metrics has no kaproxy_ series"; exit 1; }
