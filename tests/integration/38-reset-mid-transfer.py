#!/usr/bin/env python3
"""A peer that resets while bytes flow both ways is passed on as an RST on every one of many connections at once: 200 clients aborting mid-transfer are each logged client_reset / rst and each of their servers is reset; 200 servers aborting likewise are logged upstream_reset / rst and each of their clients is reset; no byte arrives corrupted before that, and nothing is left behind in kaproxy.

Per leg, on its own listener (c: 7000 -> 7001, u: 7010 -> 7011), N
connections through one crowd process on each side (crowd.py).  Both sides
queue 1 GiB each way, so the transfer is still running when, once every
connection has received at least FLOWING bytes in both directions, the
aborting side closes all N with SO_LINGER {1,0}.  The other side must see
ECONNRESET on every connection within RELAY_BOUND_S (not an orderly EOF,
and not after some timeout), and the access log must hold N lines of that
listener, each <leg>_reset, teardown rst, with bytes counted both ways.  With both directions busy the RST meets kaproxy
in a read or in a write, on either leg's event; all of them must end the
same way.

Afterwards kaproxy's descriptors are back to the start-up baseline (up to
PUMP_POOL_PIPES empty pooled pipes allowed; a pipe that held bytes of a
reset connection must have been closed, not pooled) and its RSS within the
high-water mark of N connections at 1 KiB each (not judged under ASan).
"""
import time

import lab

N = 200
# All N other peers reset, from the first abort: 0.06 s measured.  A
# keepalive or user timeout (90 s with this policy) would be far later.
RELAY_BOUND_S = 5.0
STREAM = 1 << 30
FLOWING = 256 << 10
POOL_PIPES = 64               # PUMP_POOL_PIPES
RSS_SLACK_KIB = N * 1
# leg whose peer aborts: (listener, listen port, upstream port)
LEGS = {"client": ("c", 7000, 7001), "upstream": ("u", 7010, 7011)}


def aborts(t, leg):
    name, port, up = LEGS[leg]
    srv = t.crowd("server", "server-" + name, listen="%s:%d" % (lab.SERVER_IP, up))
    cli = t.crowd("client", "client-" + name)
    r = cli.ok("connect %d %s:%d 30" % (N, lab.PROXY_CLIENT_IP, port), 35)
    t.check(r["connected"] == str(N), "%s: all %d clients connect (%s)" % (leg, N, r))
    srv.wait("accepted", N, 30)
    cli.ok("send %d" % STREAM)
    srv.ok("send %d" % STREAM)
    for p in (cli, srv):
        r = p.wait("received", FLOWING, 60)
        t.check(r["mismatch"] == "0" and r["open"] == str(N),
                "%s: bytes flow intact on all %d connections (%s)" % (p.name, N, r))
    aborter, watcher = (cli, srv) if leg == "client" else (srv, cli)
    started = time.monotonic()
    r = aborter.ok("rst_close")
    t.check(r["closed"] == str(N), "%s aborts all %d connections mid-transfer" % (aborter.name, N))
    r = watcher.wait("ended", N, RELAY_BOUND_S)
    t.check(r["reset"] == str(N) and r["eof"] == "0" and r["mismatch"] == "0",
            "%s abort: every one of the %d other peers is reset (%s)" % (leg, N, r))
    lab.log("MEASURE %s abort: %d RSTs passed on in %.2fs" % (leg, N, time.monotonic() - started))
    lines = lab.wait_until(lambda: len(t.access_log.closed(name)) >= N
                           and t.access_log.closed(name), 15, "%d lines of %s" % (N, name))
    t.check(len(lines) == N, "%s: one line per connection (%d)" % (name, len(lines)))
    t.check_closed(lines[0], leg + "_reset", "rst")
    wrong = [(l["close_reason"], l["teardown"], l.get("detail")) for l in lines
             if (l["close_reason"], l["teardown"]) != (leg + "_reset", "rst")]
    t.check(not wrong, "%s abort: all %d lines say %s_reset, teardown rst (others: %s)"
            % (leg, N, leg, sorted(set(wrong))[:5]))
    t.check(all(l["bytes_from_client"] >= FLOWING and l["bytes_to_client"] >= FLOWING
                for l in lines), "%s abort: every line counts the bytes that flowed both ways"
            % leg)


def main(t):
    px = t.start_kaproxy({name: lab.listener(listen="%s:%d" % (lab.PROXY_CLIENT_IP, port),
                                             upstream="%s:%d" % (lab.SERVER_IP, up),
                                             client=(60, 10, 3), upstream_policy=(60, 10, 3))
                          for name, port, up in LEGS.values()}, {"log_level": "info"})
    base = lab.proc_usage(px.pid)
    lab.log("baseline after start-up: %s" % base)
    for leg in LEGS:
        aborts(t, leg)
    slack = (1 << 30) if lab.asan_build(t.kaproxy_bin) else RSS_SLACK_KIB
    lab.wait_back_to_baseline(px.pid, base, slack, timeout=15, pooled_pipes=POOL_PIPES)


if __name__ == "__main__":
    lab.run(main, __doc__)
