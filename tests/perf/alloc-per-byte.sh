#!/usr/bin/env bash
# Goal: forwarding allocates nothing per byte.  The same single connection
# carries 1 MiB, then (in a second run) 1 GiB through kaproxy under valgrind;
# the heap allocation counts of the two runs must be equal, valgrind must
# report no memory error, and the sink must have received every byte sent.
# Loopback only; ports 62800-62801.
set -euo pipefail
kaproxy=${1:?usage: alloc-per-byte.sh KAPROXY}
command -v valgrind >/dev/null || { echo "valgrind not installed: skipped"; exit 77; }
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

cat >"$dir/k.ini" <<INI
[global]
access_log = off
admin_listen = off
log_level = warn
[listener a]
listen = 127.0.0.1:62801
upstream = 127.0.0.1:62800
INI

python3 - "$dir/sink.ready" "$dir/sink.counts" <<'PY' &
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 62800)); s.listen(4)
open(sys.argv[1], "w").close()
while True:
    c, _ = s.accept()
    total = 0
    while True:
        n = len(c.recv(1 << 20))
        if n == 0:
            break
        total += n
    # Written before the close the client waits for, so it is there when it returns.
    with open(sys.argv[2], "a") as f:
        f.write("%d\n" % total)
    c.close()
PY
pids+=($!)

wait_for() { # wait_for SECONDS CMD...: poll a condition with a deadline
	local deadline=$((SECONDS + $1)); shift
	until "$@"; do
		[ $SECONDS -lt $deadline ] || { echo "timed out waiting for: $*"; return 1; }
		sleep 0.1
	done
}
listening() { python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1",62801),1).close()' 2>/dev/null; }
wait_for 10 test -e "$dir/sink.ready"

allocs() { # allocs MIB: heap allocations of a kaproxy run that forwards MIB mebibytes
	valgrind --error-exitcode=3 --log-file="$dir/vg-$1.log" "$kaproxy" -c "$dir/k.ini" &
	local vp=$!
	# Readiness probe: a connection that carries nothing (counted the same in both runs).
	wait_for 30 listening
	python3 - "$1" <<'PY'
import socket, sys
c = socket.create_connection(("127.0.0.1", 62801))
block = b"x" * (1 << 20)
for _ in range(int(sys.argv[1])):
    c.sendall(block)
c.shutdown(socket.SHUT_WR)
c.settimeout(30)
c.recv(1)
c.close()
PY
	kill -TERM $vp
	wait $vp || { echo "kaproxy under valgrind exited $?"; cat "$dir/vg-$1.log"; return 1; }
	got=$(tail -n 1 "$dir/sink.counts")
	[ "$got" = $(( $1 * 1048576 )) ] ||
		{ echo "FAIL: the sink received $got bytes of $(( $1 * 1048576 ))" >&2; return 1; }
	grep -o 'total heap usage: [0-9,]* allocs' "$dir/vg-$1.log" | tr -dc '0-9'
}

small=$(allocs 1)
large=$(allocs 1024)
echo "heap allocations: 1 MiB forwarded: $small, 1 GiB forwarded: $large"
[ -n "$small" ] && [ "$small" = "$large" ] || { echo "FAIL: allocations grow with bytes"; exit 1; }
