#!/usr/bin/env python3
"""Running out of file descriptors never makes kaproxy spin or die: when accept fails with EMFILE it pauses accepting (one line in its log) instead of looping on the queued connection, a connection it cannot give an upstream socket is reset (connect_failed), and once connections close it serves the waiting client.

kaproxy runs under `prlimit --nofile=N:N` (so it cannot raise the limit
itself).  Sessions take two descriptors each, so depending on the parity of
what is left, the last client meets either a failing accept or a failing
upstream socket; both limits N and N+1 are tried, so both paths run.  Once every connection
has closed, kaproxy's descriptors are back to what it held after start-up
(empty pooled pipes allowed) and its RSS within RSS_SLACK_KIB of it (not
judged under ASan).
"""
import os
import time

import lab

BASE = 16
POOL_PIPES = 64               # PUMP_POOL_PIPES: empty pipes kaproxy may keep
# What may stay resident after the load: the high-water mark of the ~16
# sessions at the documented 1 KiB each, the buffers kaproxy's first warning
# and access-log lines allocate once (stdio, 4 KiB each), and what the
# allocator and libevent keep after their first growth: runs on this machine
# ended 0-64 KiB above the baseline.  A leak of what this scenario exhausts
# (descriptors) is caught exactly by the descriptor count, not by RSS.
RSS_SLACK_KIB = 128


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))


def run_with_limit(t, srv, limit, port):
    listen = "%s:%d" % (lab.PROXY_CLIENT_IP, port)
    px = t.start_kaproxy({"t%d" % port: lab.listener(listen=listen)},
                         wrapper=["prlimit", "--nofile=%d:%d" % (limit, limit)])
    base = lab.proc_usage(px.pid)
    held, waiting = [], None
    for i in range(limit):
        c = t.client("c%d-%d" % (port, i))
        r = c.cmd("connect %s 5" % listen)
        if r.status == "OK":
            r = c.cmd("send 10")
        if r.status == "OK":
            r = srv.cmd("accept 1", timeout=5)
        if r.status != "OK":
            waiting = c           # reset (connect_failed), or queued and not accepted
            break
        srv.ok("expect 10")
        c.server_conn = int(r["conn"])
        held.append(c)
    t.check(waiting is not None, "limit %d: the descriptors run out after %d sessions" % (limit, len(held)))

    # No busy loop while a connection waits and accept keeps failing.
    before = cpu_seconds(px.pid)
    time.sleep(2.0)   # the point is to watch CPU time over a quiet interval
    spent = cpu_seconds(px.pid) - before
    t.check(spent < 0.3, "limit %d: kaproxy idles while out of descriptors (%.2f s CPU in 2 s)"
            % (limit, spent))
    paused = "pausing" in px.stderr_text(100000)
    t.access_log.poll()
    failed = any(r["close_reason"] == "connect_failed" for r in t.access_log.records)
    lab.log("limit %d: %d sessions, then %s" % (limit, len(held),
            "accept paused (EMFILE)" if paused else "connect_failed" if failed else "?"))
    t.check(paused or failed, "limit %d: the extra client met a paused accept or a reset" % limit)

    # Free two sessions; the waiting client (if it was not reset) is served.
    for c in held[:2]:
        t.close_pair(c, srv)
    if paused:
        r_waiting = r = srv.cmd("accept 5", timeout=10)
        t.check(r.status == "OK", "limit %d: the waiting client is accepted after the pause (%s)"
                % (limit, r))
        srv.ok("expect 10")
    late = t.client("late%d" % port)
    late.ok("connect %s 5" % listen)
    late.ok("send 10")
    r = srv.cmd("accept 5", timeout=10)
    t.check(r.status == "OK", "limit %d: a new client is served again (%s)" % (limit, r))
    srv.ok("expect 10")
    late.server_conn = int(r["conn"])

    # The exhaustion over, every connection closed: nothing of it stays in kaproxy.
    for c in held[2:] + [late]:
        t.close_pair(c, srv)
    if paused:
        waiting.server_conn = int(r_waiting["conn"])
        t.close_pair(waiting, srv)
    slack = (1 << 30) if lab.asan_build(t.kaproxy_bin) else RSS_SLACK_KIB
    lab.wait_back_to_baseline(px.pid, base, slack, pooled_pipes=POOL_PIPES,
                              what="limit %d: kaproxy" % limit)
    px.drain()
    t.wait_kaproxy_exit()
    return paused, failed


def main(t):
    srv = t.server(backlog=64)
    outcomes = [run_with_limit(t, srv, BASE + k, 7000 + k) for k in (0, 1)]
    t.check(any(p for p, _ in outcomes),
            "accept failing with EMFILE paused the listener in one of the runs (%s)" % outcomes)


if __name__ == "__main__":
    lab.run(main, __doc__)
