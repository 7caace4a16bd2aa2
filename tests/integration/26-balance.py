#!/usr/bin/env python3
"""balance = roundrobin spreads new connections over the upstreams in turn, and balance = first sends every connection to the first upstream while it answers.

Two servers (:7001 and :7002).  Listener rr (port 7000) alternates between
them; listener first (port 7010) lists :7002 first and must use it for all.
"""
import lab

A, B = "%s:7001" % lab.SERVER_IP, "%s:7002" % lab.SERVER_IP


def main(t):
    srv_a = t.server(listen=A, name="server-a")
    srv_b = t.server(listen=B, name="server-b")
    t.start_kaproxy({
        "rr": lab.listener(upstream="%s, %s" % (A, B), balance="roundrobin"),
        "first": lab.listener(listen="%s:7010" % lab.PROXY_CLIENT_IP, upstream="%s, %s" % (B, A),
                              balance="first"),
    })
    got = []
    for i in range(4):
        c = t.client("rr%d" % i)
        c.ok("connect %s:7000 5" % lab.PROXY_CLIENT_IP)
        c.ok("send 10")
        # Whichever server accepts within the wait is the one it was sent to.
        ra, rb = srv_a.cmd("accept 0.5", timeout=5), None
        if ra.status == "OK":
            got.append("a")
            srv_a.ok("expect 10")
        else:
            rb = srv_b.cmd("accept 5", timeout=10)
            t.check(rb.status == "OK", "connection %d reached one of the servers" % i)
            got.append("b")
            srv_b.ok("expect 10")
    t.check(got in (["a", "b", "a", "b"], ["b", "a", "b", "a"]),
            "roundrobin alternates the upstreams (%s)" % got)

    for i in range(3):
        c = t.client("first%d" % i)
        c.ok("connect %s:7010 5" % lab.PROXY_CLIENT_IP)
        c.ok("send 10")
        r = srv_b.cmd("accept 5", timeout=10)
        t.check(r.status == "OK", "balance first: connection %d goes to the first upstream" % i)
        srv_b.ok("expect 10")
    t.check(srv_a.cmd("accept 0.5", timeout=5).status != "OK",
            "balance first: the second upstream got nothing")


if __name__ == "__main__":
    lab.run(main, __doc__)
