#!/usr/bin/env python3
"""A server that goes silent while the proxy still has data for it (a busy leg: keepalive never fires) is declared dead by TCP_USER_TIMEOUT (auto = idle + interval*count) instead of after tcp_retries2 (~15 min), logged upstream_timeout, and the client gets an RST.

Upstream policy 1s/1s/2, so the user timeout is 3 s.  The client sends
50000 bytes right after the DROP; the proxy accepts them and keeps
retransmitting to the silent server.  Measured from the client's send to
the access-log line.
"""
import lab

UPSTREAM = (1, 1, 2)


def main(t):
    srv = t.server()
    t.start_kaproxy({"t": lab.listener(client=(3, 1, 3), upstream_policy=UPSTREAM)})
    cli = t.pair(srv)
    cli.ok("send 1000")
    srv.ok("expect 1000")

    t.drop_all("server")
    sent = lab.time.time()
    cli.ok("send 50000")
    rec, r = t.close_of("t", cli, 15)
    bound = lab.worst_case_s(UPSTREAM)
    t.check_closed(rec, "upstream_timeout", "rst", bytes_from_client=51000)
    t.check_within("busy upstream dead-peer detection, send -> access-log line",
                   rec["_seen"] - sent, bound, lower_s=UPSTREAM[0], leg="upstream")
    t.check(r.status == "RESET", "client observes RESET (got %s)" % r)


if __name__ == "__main__":
    lab.run(main, __doc__)
