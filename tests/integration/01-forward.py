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

    # Both directions in flight together: neither send may wait for the other.
    cli.submit("send %d 20" % MB)
    srv.submit("send %d 20" % MB)
    srv.submit("expect %d 20" % MB)
    cli.submit("expect %d 20" % MB)
    c_sent, s_sent = cli.reply(25), srv.reply(25)
    s_got, c_got = srv.reply(25), cli.reply(25)
    t.check(c_sent.status == "OK" and s_got.status == "OK", "1 MiB client -> server: %s / %s" % (c_sent, s_got))
    t.check(s_sent.status == "OK" and c_got.status == "OK", "1 MiB server -> client: %s / %s" % (s_sent, c_got))
    t.check(c_sent["sha"] == s_got["sha"], "client->server checksum matches")
    t.check(s_sent["sha"] == c_got["sha"], "server->client checksum matches")

    cli.ok("shutdown_wr")
    r = srv.cmd("wait_close 5", timeout=10)
    t.check(r.status == "EOF" and r["extra"] == "0",
            "server gets the client's FIN after exactly the bytes sent (%s)" % r)

    # Half-closed: the server->client direction must keep working.
    srv.submit("send %d 10" % MORE)
    r = cli.cmd("expect %d 10" % MORE, timeout=15)
    t.check(r.status == "OK", "client still receives %d bytes after its SHUT_WR (%s)" % (MORE, r))
    t.check(srv.reply(5).status == "OK", "server sent them")

    srv.ok("close")
    r = cli.cmd("wait_close 5", timeout=10)
    t.check(r.status == "EOF" and r["extra"] == "0", "client gets an orderly EOF after all bytes (%s)" % r)
    cli.ok("close")

    rec = t.access_log.wait(lambda r: r.get("listener") == "t", 10, "the access-log line of t")
    for key in ("ts", "id", "listener", "client", "upstream", "duration_ms",
                "bytes_from_client", "bytes_to_client", "close_reason", "teardown",
                "client_tcp", "upstream_tcp"):
        t.check(key in rec, "access log has %r" % key)
    t.check(rec["close_reason"] == "client_fin", "close_reason client_fin (got %r)" % rec["close_reason"])
    t.check(rec["teardown"] == "none", "teardown none (got %r)" % rec["teardown"])
    t.check(rec["bytes_from_client"] == MB,
            "bytes_from_client %d == %d" % (rec["bytes_from_client"], MB))
    t.check(rec["bytes_to_client"] == MB + MORE,
            "bytes_to_client %d == %d" % (rec["bytes_to_client"], MB + MORE))
    t.check(rec["client"] == local, "client %r is the client's address %s" % (rec["client"], local))
    t.check(rec["upstream"] == "10.77.2.2:7001", "upstream %r" % rec["upstream"])
    t.check(len([r for r in t.access_log.records if r.get("listener") == "t"]) == 1,
            "exactly one line for the one connection")


if __name__ == "__main__":
    lab.run(main, __doc__)
