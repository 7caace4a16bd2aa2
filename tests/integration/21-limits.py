#!/usr/bin/env python3
"""max_connections resets the excess client at once (never queues it) and idle_timeout closes a connection whose both directions stayed silent, resetting both peers.

Listener "cap" allows 2 connections: a third is accepted and reset.
Listener "idle" has idle_timeout 1s and keepalive probes every second, which
must not count as activity.
"""
import time

import lab


def main(t):
    srv = t.server(backlog=32)
    cap = lab.listener(upstream_policy=(5, 1, 2), client=(5, 1, 2))
    idle = lab.listener(listen="%s:7010" % lab.PROXY_CLIENT_IP, idle_timeout="1500ms")
    t.start_kaproxy({"cap": cap, "idle": idle}, {"max_connections": "2"})

    a = t.pair(srv, name="client-a")
    b = t.pair(srv, name="client-b")
    srv.ok("use %d" % a.server_conn)
    t.exchange(a, srv)
    t.check_reset(t.client("client-c"), "%s:7000" % lab.PROXY_CLIENT_IP, "the third connection")
    for c in (a, b):
        t.close_pair(c, srv)
    t.check_closed(t.access_log.of("cap", 5), "client_fin", "none")

    cli = t.pair(srv, target="%s:7010" % lab.PROXY_CLIENT_IP, name="client-idle")
    t.exchange(cli, srv)
    quiet_since = time.time()
    rec, r = t.close_of("idle", cli, 10)
    t.check_closed(rec, "idle_timeout", "rst", bytes_from_client=1000, bytes_to_client=1000)
    t.check_within("idle_timeout 1.5 s", rec["_seen"] - quiet_since, 1.5, lower_s=1.4, leg="both")
    t.check(r.status == "RESET", "the client is reset (%s)" % r)
    r = srv.cmd("wait_close 5", timeout=10)
    t.check(r.status == "RESET", "the server is reset (%s)" % r)


if __name__ == "__main__":
    lab.run(main, __doc__)
