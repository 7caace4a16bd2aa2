#!/usr/bin/env bash
# bench/run.sh: kaproxy against direct loopback, HAProxy (with and without
# splice) and socat, on 127.0.0.1, in one run.
#
#   bench/run.sh [--quick] [--out FILE.json]
#
# Figures per target: bulk throughput (1 and 8 streams), 64-byte ping-pong
# latency p50/p99 (and p50 again with client, proxy and upstream pinned to
# one CPU: on a small VM cross-CPU wakeups dominate and depend on placement),
# new connections per second at concurrency 8, proxy memory per idle
# connection, proxy CPU seconds per GB forwarded. Prints one table
# (with each proxy's ratio to direct and to HAProxy without splice) and writes
# the same figures as JSON.
#
# Installs nothing. Needs cc (for bench/loadgen.c); haproxy, socat and cmake
# are needed only for their targets, which are skipped with a note if absent.
# Exits non-zero only when the harness itself breaks (loadgen does not build,
# the upstream or the direct path fails, a HAProxy/socat that is installed
# does not start); kaproxy failing to build, start or finish a test is
# reported in the table and the JSON, never as a failure, nor is performance.
#
# --strict (what CI runs): also exit non-zero when any target is missing,
# does not start, or errs or times out in any test, so a green run means
# every figure was measured.
#
# Environment: KAPROXY_BIN=path uses that binary instead of building one;
# BENCH_THREADS=N sets kaproxy workers and HAProxy nbthread (default 1);
# BENCH_BUILD_DIR=dir (default bench/.build).
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
QUICK=0
STRICT=0
OUT=""

usage() {
	sed -n '2,/^set -u/p' "$0" | sed -e '/^set -u/d' -e 's/^# \{0,1\}//'
	exit "${1:-0}"
}

while [ $# -gt 0 ]; do
	case "$1" in
	--quick) QUICK=1 ;;
	--strict) STRICT=1 ;;
	--out) [ $# -ge 2 ] || usage 2; OUT=$2; shift ;;
	--out=*) OUT=${1#--out=} ;;
	-h|--help) usage 0 ;;
	*) echo "run.sh: unknown argument: $1" >&2; usage 2 ;;
	esac
	shift
done

BUILD=${BENCH_BUILD_DIR:-$HERE/.build}
THREADS=${BENCH_THREADS:-1}
[ -n "$OUT" ] || OUT=$BUILD/results.json

if [ "$QUICK" = 1 ]; then
	BULK_SECS=0.3; PP_SECS=0.3; CR_SECS=0.3; REPS=1; IDLE_N=500; SETTLE_MS=300
else
	BULK_SECS=3; PP_SECS=3; CR_SECS=3; REPS=3; IDLE_N=5000; SETTLE_MS=1000
fi
# Keepalive policy shared by every proxy (kaproxy's defaults, made explicit).
KA_IDLE=60; KA_INTVL=10; KA_CNT=6

TARGETS="direct kaproxy haproxy haproxy-splice socat"
declare -A PORT STATUS PID

say() { printf '%s\n' "run.sh: $*" >&2; }
fatal() { say "FATAL: $*"; exit 2; }

# ---- processes: everything started here is killed at exit ----
STARTED=()
WORK=""
cleanup() {
	local pid kids
	trap - EXIT INT TERM
	for pid in "${STARTED[@]}"; do
		kids=$(ps -o pid= --ppid "$pid" 2>/dev/null)
		# shellcheck disable=SC2086 # kids is a list of pids
		kill -TERM "$pid" $kids 2>/dev/null
	done
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		local alive=0
		for pid in "${STARTED[@]}"; do
			kill -0 "$pid" 2>/dev/null && alive=1
		done
		[ "$alive" = 0 ] && break
		sleep 0.2
	done
	for pid in "${STARTED[@]}"; do
		kids=$(ps -o pid= --ppid "$pid" 2>/dev/null)
		# shellcheck disable=SC2086
		kill -KILL "$pid" $kids 2>/dev/null
	done
	wait 2>/dev/null
	[ -n "$WORK" ] && rm -rf "$WORK"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

# ---- tools ----
command -v cc >/dev/null || fatal "missing: cc (apt-get install gcc)"
MISSING=""
for tool in haproxy socat cmake; do
	command -v "$tool" >/dev/null || MISSING="$MISSING $tool"
done
[ -n "$MISSING" ] && say "missing:$MISSING (apt-get install$MISSING); their targets are skipped"
for tool in timeout ps awk; do
	command -v "$tool" >/dev/null || fatal "missing: $tool"
done

# Each proxied connection costs a proxy two descriptors, the client and the
# upstream one each: take all the hard limit allows (children inherit it).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || say "could not raise ulimit -n"
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ] && [ $((IDLE_N * 2 + 100)) -gt "$NOFILE" ]; then
	IDLE_N=$(( (NOFILE - 100) / 2 ))
	say "fd limit $NOFILE: idle test reduced to $IDLE_N connections"
fi

mkdir -p "$BUILD" || fatal "cannot create $BUILD"
WORK=$(mktemp -d /tmp/kaproxy-bench.XXXXXX) || fatal "mktemp"
RESULTS=$WORK/results.tsv
: > "$RESULTS"

# ---- builds ----
LOADGEN=$BUILD/loadgen
say "building loadgen"
cc -O2 -Wall -Wextra -pthread -o "$LOADGEN" "$HERE/loadgen.c" ||
	fatal "bench/loadgen.c does not build"

KAPROXY=""
build_kaproxy() {
	local log=$BUILD/kaproxy-build.log
	if [ -n "${KAPROXY_BIN:-}" ]; then
		[ -x "$KAPROXY_BIN" ] || { STATUS[kaproxy]="KAPROXY_BIN=$KAPROXY_BIN is not executable"; return; }
		KAPROXY=$KAPROXY_BIN
		return
	fi
	command -v cmake >/dev/null || { STATUS[kaproxy]="cmake missing"; return; }
	say "building kaproxy (Release) in $BUILD/kaproxy, log $log"
	if cmake -S "$ROOT" -B "$BUILD/kaproxy" -DCMAKE_BUILD_TYPE=Release \
	    -DKAPROXY_TESTS=OFF >"$log" 2>&1 &&
	    cmake --build "$BUILD/kaproxy" --target kaproxy -j 2 >>"$log" 2>&1 &&
	    [ -x "$BUILD/kaproxy/kaproxy" ]; then
		KAPROXY=$BUILD/kaproxy/kaproxy
	else
		STATUS[kaproxy]="build failed (see $log)"
		say "kaproxy does not build; last lines of $log:"
		tail -n 8 "$log" | sed 's/^/    /' >&2
	fi
}
build_kaproxy

# ---- ports: a block above the ephemeral range, free on 127.0.0.1 ----
port_busy() {
	ss -Htan "( sport = :$1 or dport = :$1 )" 2>/dev/null | grep -q .
}
pick_ports() {
	local base p busy
	for _ in $(seq 1 50); do
		base=$(( 61000 + (RANDOM % 400) * 10 ))
		busy=0
		for p in $(seq "$base" $((base + 5))); do
			port_busy "$p" && busy=1
		done
		[ $busy = 0 ] && { echo "$base"; return; }
	done
	fatal "no free port block found in 61000-64999"
}
BASE=$(pick_ports)
PORT[direct]=$BASE
PORT[kaproxy]=$((BASE + 1))
PORT[haproxy]=$((BASE + 2))
PORT[haproxy-splice]=$((BASE + 3))
PORT[socat]=$((BASE + 4))
UP=${PORT[direct]}

# ---- targets ----
start_bg() {   # start_bg LOG CMD...: runs CMD in the background, sets BGPID
	local log=$1; shift
	"$@" >"$log" 2>&1 &
	BGPID=$!
	STARTED+=("$BGPID")
}

ready() {   # ready TARGET: the target echoes end to end within 5 s
	"$LOADGEN" wait -p "${PORT[$1]}" -T 5000 2>>"$WORK/$1-wait.log"
}

start_server() {
	start_bg "$WORK/server.log" "$LOADGEN" server -p "$UP" -t 2
	PID[direct]=$BGPID
	ready direct || { cat "$WORK/server.log" >&2; fatal "upstream server does not start"; }
	STATUS[direct]=ok
}

start_kaproxy() {
	[ -n "$KAPROXY" ] || return
	local ini=$WORK/kaproxy.ini
	cat >"$ini" <<-EOF
	[global]
	workers          = $THREADS
	max_connections  = 15000
	log_level        = warn
	access_log       = off
	admin_listen     = off
	shutdown_timeout = 1s

	[listener bench]
	listen   = 127.0.0.1:${PORT[kaproxy]}
	upstream = 127.0.0.1:$UP
	client_keepalive            = on
	client_keepalive_idle       = ${KA_IDLE}s
	client_keepalive_interval   = ${KA_INTVL}s
	client_keepalive_count      = $KA_CNT
	upstream_keepalive          = on
	upstream_keepalive_idle     = ${KA_IDLE}s
	upstream_keepalive_interval = ${KA_INTVL}s
	upstream_keepalive_count    = $KA_CNT
	EOF
	cp "$ini" "$BUILD/kaproxy.ini"
	if ! "$KAPROXY" -t -c "$ini" >"$WORK/kaproxy-check.log" 2>&1; then
		STATUS[kaproxy]="config check failed: $(head -n 1 "$WORK/kaproxy-check.log")"
		return
	fi
	start_bg "$WORK/kaproxy.log" "$KAPROXY" -c "$ini"
	PID[kaproxy]=$BGPID
	if ready kaproxy; then
		STATUS[kaproxy]=ok
	else
		STATUS[kaproxy]="does not start or forward: $(tail -n 1 "$WORK/kaproxy.log")"
	fi
}

haproxy_cfg() {   # haproxy_cfg PORT SPLICE_OPTIONS
	cat <<-EOF
	global
	    nbthread $THREADS
	    maxconn $HAPROXY_MAXCONN
	    maxpipes 256
	    log stderr format raw local0 warning
	defaults
	    mode tcp
	    log global
	    timeout connect 5s
	    timeout client 1h
	    timeout server 1h
	    option clitcpka
	    clitcpka-idle ${KA_IDLE}s
	    clitcpka-intvl ${KA_INTVL}s
	    clitcpka-cnt $KA_CNT
	    option srvtcpka
	    srvtcpka-idle ${KA_IDLE}s
	    srvtcpka-intvl ${KA_INTVL}s
	    srvtcpka-cnt $KA_CNT
	$2
	frontend bench
	    bind 127.0.0.1:$1
	    default_backend upstream
	backend upstream
	    server s1 127.0.0.1:$UP
	EOF
}

# HAProxy refuses to start if the descriptors its maxconn implies (two per
# connection, plus pipes for splice) exceed the hard limit.
HAPROXY_MAXCONN=9000
if [ "$NOFILE" != unlimited ] && [ $((HAPROXY_MAXCONN * 2 + 1000)) -gt "$NOFILE" ]; then
	HAPROXY_MAXCONN=$(( (NOFILE - 1000) / 2 ))
fi
HARNESS_BROKEN=""
start_haproxy() {   # start_haproxy TARGET SPLICE_OPTIONS
	local t=$1 cfg=$WORK/$1.cfg
	command -v haproxy >/dev/null || { STATUS[$t]="haproxy missing"; return; }
	haproxy_cfg "${PORT[$t]}" "$2" >"$cfg"
	cp "$cfg" "$BUILD/$t.cfg"
	if ! haproxy -c -q -f "$cfg" >"$WORK/$t-check.log" 2>&1; then
		STATUS[$t]="config rejected: $(head -n 1 "$WORK/$t-check.log")"
		HARNESS_BROKEN="$HARNESS_BROKEN $t"
		return
	fi
	start_bg "$WORK/$t.log" haproxy -db -f "$cfg"
	PID[$t]=$BGPID
	if ready "$t"; then
		STATUS[$t]=ok
	else
		STATUS[$t]="does not start: $(tail -n 1 "$WORK/$t.log")"
		HARNESS_BROKEN="$HARNESS_BROKEN $t"
	fi
}

start_socat() {
	command -v socat >/dev/null || { STATUS[socat]="socat missing"; return; }
	local ka="keepalive,keepidle=$KA_IDLE,keepintvl=$KA_INTVL,keepcnt=$KA_CNT"
	start_bg "$WORK/socat.log" socat \
	    "TCP4-LISTEN:${PORT[socat]},bind=127.0.0.1,fork,reuseaddr,backlog=1024,$ka" \
	    "TCP4:127.0.0.1:$UP,$ka"
	PID[socat]=$BGPID
	if ready socat; then
		STATUS[socat]=ok
	else
		STATUS[socat]="does not start: $(tail -n 1 "$WORK/socat.log")"
		HARNESS_BROKEN="$HARNESS_BROKEN socat"
	fi
}

start_server
start_kaproxy
start_haproxy haproxy ""
start_haproxy haproxy-splice "    option splice-request
    option splice-response"
start_socat
for t in $TARGETS; do
	: "${STATUS[$t]:=not started}"
	say "$(printf '%-15s port %-5s %s' "$t" "${PORT[$t]}" "${STATUS[$t]}")"
done

# ---- measurements ----
# run_test TARGET LABEL REP LIMIT_S SUBCOMMAND ARGS...: runs loadgen against
# TARGET under a time limit and appends one line to RESULTS.
run_test() {
	local t=$1 label=$2 rep=$3 limit=$4 out rc
	shift 4
	[ "${STATUS[$t]}" = ok ] || return 0
	if [ -n "${PID[$t]:-}" ] && ! kill -0 "${PID[$t]}" 2>/dev/null; then
		STATUS[$t]="exited during the run: $(tail -n 1 "$WORK/$t.log" 2>/dev/null)"
		say "$t is gone: ${STATUS[$t]}"
		return 0
	fi
	out=$(timeout -k 2 "$limit" "$LOADGEN" "$@" -p "${PORT[$t]}" 2>>"$WORK/$t.log")
	rc=$?
	if [ $rc = 124 ] || [ $rc = 137 ]; then
		out="$out error=\"timed out after ${limit}s\""
	elif [ $rc != 0 ]; then
		out="$out error=\"loadgen exit $rc: $(tail -n 1 "$WORK/$t.log" | tr -d '"')\""
	fi
	printf '%s\t%s\t%s\t%s\n' "$t" "$label" "$rep" "$out" >>"$RESULTS"
	say "$(printf '%-15s %-9s %s' "$t" "$label" "$out")"
	if [ "$t" = direct ] && [ $rc != 0 ]; then
		HARNESS_BROKEN="$HARNESS_BROKEN direct:$label"
	fi
	return 0
}

say "idle memory: $IDLE_N connections per proxy"
for t in $TARGETS; do
	[ "$t" = direct ] && continue
	run_test "$t" idle 1 120 idle -n "$IDLE_N" -P "${PID[$t]:-0}" -S "$SETTLE_MS"
done

BULK_LIMIT=$(awk -v s="$BULK_SECS" 'BEGIN { printf "%d", s * 4 + 30 }')
PP_LIMIT=$(awk -v s="$PP_SECS" 'BEGIN { printf "%d", s * 2 + 20 }')
CR_LIMIT=$(awk -v s="$CR_SECS" 'BEGIN { printf "%d", s * 2 + 20 }')
for rep in $(seq 1 "$REPS"); do
	say "round $rep of $REPS"
	for t in $TARGETS; do
		pid=${PID[$t]:-0}
		[ "$t" = direct ] && pid=0
		run_test "$t" bulk1 "$rep" "$BULK_LIMIT" bulk -c 1 -d "$BULK_SECS" -P "$pid"
		run_test "$t" bulk8 "$rep" "$BULK_LIMIT" bulk -c 8 -d "$BULK_SECS" -P "$pid"
		run_test "$t" pingpong "$rep" "$PP_LIMIT" pingpong -d "$PP_SECS" -s 64
		pins=${PID[direct]}
		[ "$t" = direct ] || pins="$pins,${PID[$t]:-}"
		run_test "$t" pingpong1 "$rep" "$PP_LIMIT" pingpong -d "$PP_SECS" -s 64 -A "$pins"
		run_test "$t" connrate "$rep" "$CR_LIMIT" connrate -c 8 -d "$CR_SECS" -s 64
	done
done

# ---- report ----
for t in $TARGETS; do
	printf '%s\t%s\n' "$t" "${STATUS[$t]}"
done >"$WORK/status.tsv"

COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)
[ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null | head -n 1)" ] && COMMIT="$COMMIT+dirty"

awk -F '\t' \
    -v targets="$TARGETS" -v out="$OUT" -v quick="$QUICK" -v commit="$COMMIT" \
    -v date="$(date -u +%Y-%m-%dT%H:%M:%SZ)" -v kernel="$(uname -r)" \
    -v cpus="$(nproc)" -v threads="$THREADS" -v reps="$REPS" \
    -v bulk_secs="$BULK_SECS" -v pp_secs="$PP_SECS" -v cr_secs="$CR_SECS" \
    -v idle_n="$IDLE_N" -v ka="$KA_IDLE/$KA_INTVL/$KA_CNT" \
    -f "$HERE/report.awk" "$WORK/status.tsv" "$RESULTS" ||
	fatal "report failed"
say "JSON written to $OUT"

if [ -n "$HARNESS_BROKEN" ]; then
	say "harness broken:$HARNESS_BROKEN"
	exit 1
fi
if [ "$STRICT" = 1 ]; then
	bad=""
	for t in $TARGETS; do
		[ "${STATUS[$t]}" = ok ] || bad="$bad $t(${STATUS[$t]})"
	done
	errs=$(grep -c 'error=' "$RESULTS" || true)
	if [ -n "$bad" ] || [ "$errs" != 0 ]; then
		say "strict: not every figure was measured:$bad; $errs test(s) with an error:"
		grep 'error=' "$RESULTS" >&2 || true
		exit 1
	fi
	say "strict: every target ran every test"
fi
exit 0
