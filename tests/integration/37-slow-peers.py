#!/usr/bin/env python3
"""Peers that send nothing or never read cost kaproxy a bounded, small amount each: 1,000 silent clients are held for under 1 KiB of RSS each and no CPU, silent clients are closed by idle_timeout (close_reason idle_timeout, both peers reset), and 100 clients that never read while their upstream sends 10 MiB each pin at most one 256 KiB pipe plus their two sockets' buffers in kaproxy, nothing in its user memory, until they read every byte intact.

Three listeners on one kaproxy, one crowd process (crowd.py) per peer set:
- idle (7000, no idle_timeout): IDLE clients connect and stay silent for
  HOLD_S with keepalive probing every second; RSS growth / IDLE must be
  at most 1 KiB (README, Data path and memory) and kaproxy's CPU time
  nearly nil; then each exchanges 1,000 bytes, so all were really held.
- timed (7010, idle_timeout 1.5 s): TIMED silent clients are all reset at
  1.5 s (not earlier than 1.4 s), each logged idle_timeout / rst with 0
  bytes, and the server sees every upstream leg reset too.
- slow (7020): SLOW clients that do not read; the server sends SLOW_BYTES
  on each.  Once nothing moves any more, per connection: at most one pipe
  holds data, at most PUMP_PIPE_SIZE (its capacity, read with
  F_GETPIPE_SZ, is exactly that), the client leg's send queue and the
  upstream leg's receive queue are within the kernel's socket buffer
  limits, the server is blocked (it could not send everything), and
  kaproxy's RSS grew by at most 1 KiB per connection.  Then the clients
  read: every byte arrives, verified against the stream pattern.
Finally descriptors and RSS are back to the start-up baseline (RSS slack:
the high-water mark of IDLE connections at 1 KiB each; malloc keeps it).
RSS is not judged with an ASan build (quarantine, shadow memory).
"""
import fcntl
import os
import re
import time

import lab

IDLE, TIMED, SLOW = 1000, 300, 100
HOLD_S = 3.0
IDLE_TIMEOUT_S = 1.5
SLOW_BYTES = 10 << 20
PIPE_SIZE = 256 << 10         # PUMP_PIPE_SIZE
POOL_PIPES = 64               # PUMP_POOL_PIPES
PX = lab.PROXY_CLIENT_IP
POLICY = (60, 10, 3)          # user timeout 90 s: a zero window outlives this test
RSS_SLACK_KIB = IDLE * 1


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))


def sysctl_max(t, name):
    """The maximum (third value) of a tcp_rmem / tcp_wmem triple in the proxy namespace."""
    return int(t.run("proxy", ["sysctl", "-n", name]).stdout.split()[2])


# `ss -tmnH state established`: Recv-Q Send-Q Local Peer, then skmem:(...)
SKMEM = re.compile(r"^\d+\s+\d+\s+(\S+)\s+(\S+)\s+skmem:\(([^)]*)\)", re.M)


def socket_memory(t):
    """kaproxy's TCP sockets (the only ones in the proxy namespace) with their
    kernel memory from `ss -tm`: {"local", "peer", "r" (receive queue),
    "rb" (receive buffer), "w" (send queue), "tb" (send buffer), ...}."""
    out = t.run("proxy", ["ss", "-tmnH", "state", "established"]).stdout
    socks = []
    for m in SKMEM.finditer(out):
        mem = {k: int(v) for k, v in re.findall(r"([a-z]+)(\d+)", m.group(3))}
        mem.update(local=m.group(1), peer=m.group(2))
        socks.append(mem)
    return socks


def idle_clients(t, srv, px):
    before = lab.proc_usage(px.pid)
    idle = t.crowd("client", "idle", expect="echo")
    r = idle.ok("connect %d %s:7000 30" % (IDLE, PX), 35)
    t.check(r["connected"] == str(IDLE), "all %d silent clients connect (%s)" % (IDLE, r))
    srv.wait("accepted", IDLE, 30)
    held = lab.proc_usage(px.pid)
    cpu = cpu_seconds(px.pid)
    time.sleep(HOLD_S)    # the point: time passes while they stay silent
    spent = cpu_seconds(px.pid) - cpu
    per = (held["rss_kib"] - before["rss_kib"]) / IDLE
    lab.log("MEASURE %d silent clients held: %.2f KiB RSS each, %.2f s CPU in %.0f s "
            "(%s -> %s)" % (IDLE, per, spent, HOLD_S, before, held))
    if not lab.asan_build(t.kaproxy_bin):
        t.check(per <= 1.0, "a silent connection costs at most 1 KiB of RSS (%.2f KiB)" % per)
    t.check(spent < 0.2, "holding %d silent connections costs no CPU (%.2f s in %.0f s)"
            % (IDLE, spent, HOLD_S))
    idle.ok("send 1000")
    r = idle.wait("received", 1000, 30)
    t.check(r["open"] == str(IDLE) and r["mismatch"] == "0",
            "all %d were held: each still exchanges 1,000 bytes (%s)" % (IDLE, r))
    idle.ok("close")
    lab.wait_until(lambda: len(t.access_log.closed("idle")) == IDLE, 30,
                   "%d idle lines" % IDLE, interval=0.2)


def timed_clients(t, srv):
    resets = int(srv.ok("stats")["reset"])
    timed = t.crowd("client", "timed")
    started = time.time()
    r = timed.ok("connect %d %s:7010 30" % (TIMED, PX), 35)
    t.check(r["connected"] == str(TIMED), "all %d clients connect (%s)" % (TIMED, r))
    r = timed.wait("ended", TIMED, IDLE_TIMEOUT_S + 15)
    t.check(r["reset"] == str(TIMED), "every silent client is reset (%s)" % r)
    lines = lab.wait_until(lambda: len(t.access_log.closed("timed")) == TIMED
                           and t.access_log.closed("timed"), 10, "%d timed lines" % TIMED)
    t.check_closed(lines[0], "idle_timeout", "rst", bytes_from_client=0, bytes_to_client=0)
    t.check(all(l["close_reason"] == "idle_timeout" and l["teardown"] == "rst"
                and l["bytes_from_client"] == 0 for l in lines),
            "all %d lines say idle_timeout, teardown rst, no bytes" % TIMED)
    first, last = (min(l["_seen"] for l in lines) - started,
                   max(l["_seen"] for l in lines) - started)
    t.check_within("idle_timeout %.1f s over %d silent clients, last one" % (IDLE_TIMEOUT_S, TIMED),
                   last, IDLE_TIMEOUT_S, leg="both", situation="idle_timeout, %d at once" % TIMED)
    durations = [l["duration_ms"] for l in lines]
    t.check(min(durations) >= IDLE_TIMEOUT_S * 1000 - 100,
            "none closed before idle_timeout (shortest duration %d ms, first line %.2fs)"
            % (min(durations), first))
    r = srv.wait("ended", IDLE + TIMED, 10)
    t.check(int(r["reset"]) - resets == TIMED, "the server sees all %d upstream legs reset (%s)"
            % (TIMED, r))


def slow_readers(t, px):
    src = t.crowd("server", "source", listen="%s:7021" % lab.SERVER_IP)
    before = lab.proc_usage(px.pid)
    slow = t.crowd("client", "slow")
    slow.ok("read off")
    r = slow.ok("connect %d %s:7020 30" % (SLOW, PX), 35)
    t.check(r["connected"] == str(SLOW), "all %d slow readers connect (%s)" % (SLOW, r))
    src.wait("accepted", SLOW, 30)
    src.ok("send %d" % SLOW_BYTES)
    r = src.wait("quiet", 1.0, 60)
    lab.log("stalled: %s" % r)
    t.check(int(r["sent"]) < SLOW * SLOW_BYTES,
            "backpressure reaches the server: it could send only %d of %d bytes"
            % (int(r["sent"]), SLOW * SLOW_BYTES))

    usage = lab.proc_usage(px.pid)
    per_rss = (usage["rss_kib"] - before["rss_kib"]) / SLOW
    holding = {fds[0]: lab.pipe_bytes(px.pid, fds[0]) for fds in lab.proc_pipes(px.pid).values()}
    full = [n for n in holding.values() if n]
    probe = lab.steal_fd(px.pid, next(fd for fd, n in holding.items() if n))
    try:
        capacity = fcntl.fcntl(probe, fcntl.F_GETPIPE_SZ)
    finally:
        os.close(probe)
    socks = socket_memory(t)
    client_leg = [s for s in socks if s["local"] == "%s:7020" % PX]
    upstream_leg = [s for s in socks if s["peer"] == "%s:7021" % lab.SERVER_IP]
    t.check(len(client_leg) == len(upstream_leg) == SLOW,
            "ss sees %d client legs and %d upstream legs" % (len(client_leg), len(upstream_leg)))
    sndq = max(s["w"] for s in client_leg)
    rcvq = max(s["r"] for s in upstream_leg)
    rmem_max = sysctl_max(t, "net.ipv4.tcp_rmem")
    wmem_max = sysctl_max(t, "net.ipv4.tcp_wmem")
    total = sum(full) + sum(s["w"] for s in client_leg) + sum(s["r"] for s in upstream_leg)
    lab.log("MEASURE %d slow readers, %d MiB sent to each: kaproxy RSS +%.2f KiB per connection; "
            "kernel memory per connection: pipe %.0f KiB avg / %.0f KiB max (capacity %d KiB), "
            "client leg send queue %.0f KiB avg / %.0f KiB max (sndbuf max %.0f KiB), "
            "upstream leg receive queue %.0f KiB avg / %.0f KiB max (rcvbuf max %.0f KiB), "
            "total %.0f KiB avg" % (
                SLOW, SLOW_BYTES >> 20, per_rss, sum(full) / SLOW / 1024.0, max(full) / 1024.0,
                capacity >> 10, sum(s["w"] for s in client_leg) / SLOW / 1024.0, sndq / 1024.0,
                max(s["tb"] for s in client_leg) / 1024.0,
                sum(s["r"] for s in upstream_leg) / SLOW / 1024.0, rcvq / 1024.0,
                max(s["rb"] for s in upstream_leg) / 1024.0, total / SLOW / 1024.0))
    t.check(capacity == PIPE_SIZE, "kaproxy's pipes hold %d bytes (F_GETPIPE_SZ %d)"
            % (PIPE_SIZE, capacity))
    t.check(len(full) <= SLOW and max(full) <= PIPE_SIZE,
            "at most one pipe per slow connection holds data, at most %d bytes each "
            "(%d pipes with data, largest %d)" % (PIPE_SIZE, len(full), max(full)))
    t.check(all(s["w"] <= s["tb"] + (64 << 10) for s in client_leg),
            "every client leg's send queue is within its send buffer (+ one 64 KiB skb)")
    t.check(all(s["r"] <= s["rb"] + (64 << 10) for s in upstream_leg),
            "every upstream leg's receive queue is within its receive buffer (+ one 64 KiB skb)")
    bound = PIPE_SIZE + wmem_max + rmem_max
    t.check(max(full) + sndq + rcvq <= bound,
            "per connection kaproxy pins at most pipe + tcp_wmem max + tcp_rmem max = %d KiB "
            "(worst seen: %d KiB)" % (bound >> 10, (max(full) + sndq + rcvq) >> 10))
    if not lab.asan_build(t.kaproxy_bin):
        t.check(per_rss <= 1.0, "no forwarded byte is in kaproxy's user memory: RSS +%.2f KiB "
                "per slow connection (at most 1)" % per_rss)

    slow.ok("read on")
    r = slow.wait("received", SLOW_BYTES, 120)
    t.check(r["mismatch"] == "0" and r["open"] == str(SLOW),
            "every slow reader then receives all %d bytes intact (%s)" % (SLOW_BYTES, r))
    slow.ok("close")
    lines = lab.wait_until(lambda: len(t.access_log.closed("slow")) == SLOW
                           and t.access_log.closed("slow"), 30, "%d slow lines" % SLOW)
    t.check(all(l["close_reason"] == "client_fin" and l["bytes_to_client"] == SLOW_BYTES
                for l in lines), "all %d slow connections end client_fin with %d bytes to the "
            "client" % (SLOW, SLOW_BYTES))


def main(t):
    srv = t.crowd("server", "server", listen="%s:7001" % lab.SERVER_IP)
    srv.ok("echo on")
    keys = dict(client=POLICY, upstream_policy=POLICY)
    px = t.start_kaproxy({
        "idle": lab.listener(**keys),
        "timed": lab.listener(listen="%s:7010" % PX, idle_timeout="%dms" % (IDLE_TIMEOUT_S * 1000),
                              **keys),
        "slow": lab.listener(listen="%s:7020" % PX, upstream="%s:7021" % lab.SERVER_IP, **keys),
    }, {"log_level": "info"})
    base = lab.proc_usage(px.pid)
    lab.log("baseline after start-up: %s" % base)
    idle_clients(t, srv, px)
    timed_clients(t, srv)
    slow_readers(t, px)
    slack = (1 << 30) if lab.asan_build(t.kaproxy_bin) else RSS_SLACK_KIB
    lab.wait_back_to_baseline(px.pid, base, slack, timeout=15, pooled_pipes=POOL_PIPES)


if __name__ == "__main__":
    lab.run(main, __doc__)
