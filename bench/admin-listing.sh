#!/usr/bin/env bash
# bench/admin-listing.sh: what a /connections listing costs the data path.
#
#   bench/admin-listing.sh [-n CONNECTIONS] [-d SECS] [-w WORKERS] [-i MS] [KAPROXY_BIN]
#
# Holds CONNECTIONS (default 5000) idle connections through kaproxy, then
# measures 64-byte ping-pong latency over one more connection twice, for SECS
# (default 5) each: once with the admin endpoint quiet, once while a client
# asks for /connections?limit=100000 (every connection, both legs' TCP_INFO)
# every MS milliseconds (default 0: back to back, the worst case). Prints
# p50/p99/p99.9/max for both runs and how long a listing took. Loopback only;
# needs cc and curl. Installs nothing.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
N=5000 SECS=5 WORKERS=1 INTERVAL=0
while getopts "n:d:w:i:" opt; do
	case $opt in
	n) N=$OPTARG ;;
	d) SECS=$OPTARG ;;
	w) WORKERS=$OPTARG ;;
	i) INTERVAL=$OPTARG ;;
	*) sed -n '2,13p' "$0"; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
KAPROXY=${1:-$ROOT/build/kaproxy}
BUILD=${BENCH_BUILD_DIR:-$HERE/.build}
mkdir -p "$BUILD"
cc -O2 -Wall -o "$BUILD/loadgen" "$HERE/loadgen.c" -lpthread

DIR=$(mktemp -d /tmp/kaproxy-listing.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$DIR"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port) PX=$(free_port) ADMIN=$(free_port)
"$BUILD/loadgen" server -p "$UP" & PIDS+=($!)
"$BUILD/loadgen" wait -p "$UP" -T 5000
cat > "$DIR/kaproxy.ini" <<INI
[global]
workers = $WORKERS
max_connections = $((N + 100))
access_log = off
admin_listen = 127.0.0.1:$ADMIN
[listener bench]
listen = 127.0.0.1:$PX
upstream = 127.0.0.1:$UP
INI
"$KAPROXY" -c "$DIR/kaproxy.ini" 2>"$DIR/kaproxy.err" & PIDS+=($!)
"$BUILD/loadgen" wait -p "$PX" -T 5000

# Hold N connections open (idle keeps them through its settle time).
"$BUILD/loadgen" idle -p "$PX" -n "$N" -S $(( (SECS * 2 + 30) * 1000 )) > "$DIR/idle.out" & PIDS+=($!)
for _ in $(seq 1 300); do
	have=$(curl -s -o /dev/null -D - "http://127.0.0.1:$ADMIN/connections?limit=1" |
	    tr -d '\r' | awk -F': ' 'tolower($1) == "x-kaproxy-connections" { print $2 }')
	[ "${have:-0}" -ge "$N" ] && break
	sleep 0.1
done
[ "${have:-0}" -ge "$N" ] || { echo "admin-listing: only ${have:-0} of $N connections open" >&2; exit 1; }

quiet=$("$BUILD/loadgen" pingpong -p "$PX" -d "$SECS" -s 64)
( while :; do
	curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$ADMIN/connections?limit=100000"
	[ "$INTERVAL" = 0 ] || sleep "$(awk -v ms="$INTERVAL" 'BEGIN { print ms / 1000 }')"
  done > "$DIR/listings" ) & LISTER=$!
PIDS+=($LISTER)
busy=$("$BUILD/loadgen" pingpong -p "$PX" -d "$SECS" -s 64)
kill "$LISTER"; wait "$LISTER" 2>/dev/null || true
count=$(wc -l < "$DIR/listings")
per=$(awk '{ s += $1 } END { if (NR) printf "%.1f", s / NR * 1000 }' "$DIR/listings")
echo "connections=$N workers=$WORKERS listing_every_ms=$INTERVAL kaproxy=$KAPROXY"
echo "quiet:    $quiet"
echo "listing:  $busy"
echo "listings=$count mean_listing_ms=$per"
