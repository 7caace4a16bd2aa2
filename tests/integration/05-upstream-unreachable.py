#!/usr/bin/env python3
"""An upstream that cannot be reached ends the client's connection with an RST and is logged: one that refuses (its kernel answers RST) as connect_failed at once, one that never answers the SYN as connect_timeout after connect_timeout; listed first of two (balance = first), the proxy moves on to the second just as soon and carries data, half-close included.

In the server namespace nothing listens on 7009 (refused) and SYNs to 7008
are dropped (a filtered port: no RST, no ICMP); 7001 works.  connect_timeout
is 1s.  For each way, listener WAY points at the bad port alone and
WAY-first lists it before 7001; the time from the client's connect to the
verdict (alone) and to the second upstream's accept (first) is measured.
"""
import time

import lab

WORKING = "%s:7001" % lab.SERVER_IP
CONNECT_TIMEOUT = 1.0
# way: (the unreachable upstream, close_reason, how long the proxy tries it)
WAYS = {
    "refused": ("%s:7009" % lab.SERVER_IP, "connect_failed", 0.0),
    "silent": ("%s:7008" % lab.SERVER_IP, "connect_timeout", CONNECT_TIMEOUT),
}
PORT = {"refused": 7000, "refused-first": 7001, "silent": 7002, "silent-first": 7003}


def proxy(name):
    return "%s:%d" % (lab.PROXY_CLIENT_IP, PORT[name])


def unreachable(t, srv, way):
    bad, reason, tries_s = WAYS[way]
    lower = tries_s - 0.2 if tries_s else None

    cli = t.client("client-" + way)
    t0 = time.time()
    t.check_reset(cli, proxy(way), way)
    rec = t.access_log.of(way)
    t.check_closed(rec, reason, "rst", upstream=bad, bytes_from_client=0, bytes_to_client=0)
    t.check_within("%s upstream alone: connect -> access-log line" % way, rec["_seen"] - t0,
                   tries_s, lower_s=lower, leg="upstream", situation=reason)

    first = way + "-first"
    cli = t.client("client-" + first)
    cli.ok("connect %s 5" % proxy(first))
    t0 = time.time()
    srv.ok("accept 5")
    t.check_within("%s upstream listed first: connect -> the second upstream accepts" % way,
                   time.time() - t0, tries_s, lower_s=lower, leg="upstream",
                   situation="failover after " + reason)
    t.exchange(cli, srv, 20000)
    t.half_close(cli, srv, 30000)
    t.check_closed(t.access_log.of(first), "client_fin", "none", upstream=WORKING,
                   bytes_from_client=20000, bytes_to_client=50000)


def main(t):
    srv = t.server()
    t.run("server", ["iptables", "-w", "5", "-I", "INPUT", "-p", "tcp", "--dport", "7008",
                     "-j", "DROP"])
    listeners = {}
    for way, (bad, _, _) in WAYS.items():
        listeners[way] = lab.listener(listen=proxy(way), upstream=bad,
                                      connect_timeout=lab.fmt_duration(CONNECT_TIMEOUT))
        # The failover itself is measured here: with upstream_recheck_on_death
        # the alone listener's failure would make the bad address suspect and
        # new clients would skip it (that is scenario 45's).
        listeners[way + "-first"] = lab.listener(
            listen=proxy(way + "-first"), upstream="%s, %s" % (bad, WORKING), balance="first",
            connect_timeout=lab.fmt_duration(CONNECT_TIMEOUT), upstream_recheck_on_death="off")
    t.start_kaproxy(listeners)
    for way in WAYS:
        unreachable(t, srv, way)


if __name__ == "__main__":
    lab.run(main, __doc__)
