#!/usr/bin/env python3
"""With teardown = fin, a dead server ends the client's connection in order: the client receives every byte the server had sent and then a FIN (EOF), not an RST; the access log says upstream_timeout, teardown fin.

The server sends 200000 bytes that the client does not read before the
DROP, so some of them still sit in the proxy when the upstream is declared
dead; they must all reach the client before the FIN.
"""
import lab

UPSTREAM = (1, 1, 2)
N = 200000


def main(t):
    srv = t.server()
    t.start_kaproxy({"t": lab.listener(client=(3, 1, 3), upstream_policy=UPSTREAM, teardown="fin")})
    cli = t.pair(srv)
    srv.ok("send %d 10" % N)
    # One byte read proves the stream is flowing; the rest stays unread
    # in the client's socket and the proxy.  Whatever the DROP cuts off
    # the server is not owed to the client: bytes_to_client is the measure.
    t.check(cli.cmd("expect 1 10", timeout=15).status == "OK", "client starts receiving")
    dropped = t.drop_all("server")
    rec = t.access_log.of("t", 15)
    t.check_closed(rec, "upstream_timeout", "fin")
    t.check_within("upstream dead-peer detection, DROP -> access-log line",
                   rec["_seen"] - dropped, lab.worst_case_s(UPSTREAM), leg="upstream")
    owed = rec["bytes_to_client"]
    r = cli.cmd("expect %d 10" % (owed - 1), timeout=15)
    t.check(r.status == "OK", "client receives all %d bytes the proxy got (%s)" % (owed, r))
    r = cli.cmd("wait_close 5", timeout=10)
    t.check(r.status == "EOF" and r["extra"] == "0", "then an orderly EOF, not an RST (%s)" % r)
    cli.ok("close")  # kaproxy lingers (up to 10 s) for this FIN before freeing the leg


if __name__ == "__main__":
    lab.run(main, __doc__)
