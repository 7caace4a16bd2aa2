#!/usr/bin/env python3
"""A client that goes silent while idle (powered off / path broken) is declared dead by the client keepalive within idle + interval*count, logged as client_timeout, and the server gets an RST (ECONNRESET).

Client policy 1s/1s/2 (bound 3 s); the upstream leg uses 3s/1s/3 (bound
6 s) so a proxy applying the wrong leg's values fails the bound.
Detection is measured from the DROP to the access-log line.
"""
import lab

CLIENT = (1, 1, 2)
UPSTREAM = (3, 1, 3)
SLACK = 1.5


def main(t):
    srv = t.server()
    t.start_kaproxy({"t": lab.listener(client=CLIENT, upstream_policy=UPSTREAM)})
    cli = t.pair(srv)
    t.exchange(cli, srv)

    dropped = t.drop_all("client")
    bound = lab.worst_case_s(CLIENT)
    rec, r = t.close_of("t", srv, bound + 10)
    t.check(rec["close_reason"] == "client_timeout",
            "close_reason client_timeout (got %r, detail %r)" % (rec["close_reason"], rec.get("detail")))
    t.check(rec["teardown"] == "rst", "teardown rst (got %r)" % rec["teardown"])
    t.check_within("client dead-peer detection, DROP -> access-log line",
                   rec["_seen"] - dropped, bound, SLACK, lower_s=CLIENT[0])
    if "detect_ms" in rec:
        t.check_within("detect_ms (last segment from client -> declared dead)",
                       rec["detect_ms"] / 1000.0, bound, SLACK, lower_s=CLIENT[0])
    t.check(r.status == "RESET", "server observes RESET (ECONNRESET) (got %s)" % r)


if __name__ == "__main__":
    lab.run(main, __doc__)
