#!/usr/bin/env python3
"""A client that goes silent while the proxy cannot deliver its bytes (the server stopped reading, so the client leg is not being read) is still found dead by the client leg's own keepalive, logged as client_timeout (not blamed on the stalled upstream), and the server gets an RST.

The server never reads; the client tries to send 64 MB, which fills the server's
receive buffer, the proxy's pipe and its socket buffers, then goes silent.
Client policy 1s/1s/2 (bound 3 s); the upstream leg's user timeout is long
(20 s), so an upstream_timeout would come far too late.
"""
import time

import lab

CLIENT = (1, 1, 2)


def main(t):
    srv = t.server()
    t.start_kaproxy({"t": lab.listener(client=CLIENT, upstream_policy=(10, 5, 2))})
    cli = t.pair(srv)
    r = cli.cmd("send 64000000 3", timeout=10)
    t.check(r.status == "ERR" and "TIMEOUT" in r.raw,
            "the client cannot send everything: the path is stalled (%s)" % r)
    last = time.time()
    dropped = t.drop_all("client")
    # The server must not read until the verdict: reading would unblock the pipe.
    rec = t.access_log.of("t", 15)
    t.check_closed(rec, "client_timeout", "rst")
    t.check_within("client dead while its leg is not read, DROP -> access-log line",
                   rec["_seen"] - dropped, lab.worst_case_s(CLIENT), leg="client")
    lab.log("last client send %.2fs before the DROP" % (dropped - last))
    r = srv.cmd("wait_close 10", timeout=15)
    t.check(r.status == "RESET", "the server observes RESET (got %s)" % r)


if __name__ == "__main__":
    lab.run(main, __doc__)
