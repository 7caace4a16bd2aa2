#!/usr/bin/env python3
"""Bytes cross the proxy unchanged both ways, and a client half-close is forwarded: after the client's shutdown(SHUT_WR) the server still sends and the client receives it all; the access log says client_fin, teardown none, with exact byte counts.

1 MiB flows each way at the same time (content and order verified by the
peers' stream pattern and SHA-256), the client then shuts down its write
side, the server sees EOF after exactly those bytes, sends 300000 more that
the client must still receive, and closes; the client sees an orderly EOF.
"""
import lab

MB = 1 << 20
MORE = 300000


def main(t):
    srv = t.server()
    t.start_kaproxy({"t": lab.listener()})
    cli = t.pair(srv)
    local = cli.ok("info")["local"]
    t.both_ways(cli, srv, MB)
    t.half_close(cli, srv, MORE)
    cli.ok("close")

    rec = t.access_log.of("t")
    t.check_closed(rec, "client_fin", "none", bytes_from_client=MB, bytes_to_client=MB + MORE,
                   client=local, upstream="%s:7001" % lab.SERVER_IP)
    t.check(len(t.access_log.closed("t")) == 1, "exactly one line for the one connection")


if __name__ == "__main__":
    lab.run(main, __doc__)
