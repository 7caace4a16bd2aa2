#!/usr/bin/env python3
"""A server that goes silent while idle (powered off / path broken: every packet dropped) is declared dead by the upstream keepalive within idle + interval*count, logged as upstream_timeout, and the client gets an RST (ECONNRESET).

Upstream policy 1s/1s/2 (bound 3 s); the client leg uses a longer policy
(3s/1s/3, bound 6 s) so a proxy applying the wrong leg's values fails the
bound.  Detection is measured from the moment the DROP rules are in place
to the moment the access-log line appears.
"""
import lab

CLIENT = (3, 1, 3)
UPSTREAM = (1, 1, 2)
SLACK = 1.5


def main(t):
    srv = t.server()
    t.start_kaproxy({"t": lab.listener(client=CLIENT, upstream_policy=UPSTREAM)})
    cli = t.pair(srv)
    t.exchange(cli, srv)

    dropped = t.drop_all("server")
    bound = lab.worst_case_s(UPSTREAM)
    rec, r = t.close_of("t", cli, bound + 10)
    t.check(rec["close_reason"] == "upstream_timeout",
            "close_reason upstream_timeout (got %r, detail %r)" % (rec["close_reason"], rec.get("detail")))
    t.check(rec["teardown"] == "rst", "teardown rst (got %r)" % rec["teardown"])
    t.check_within("upstream dead-peer detection, DROP -> access-log line",
                   rec["_seen"] - dropped, bound, SLACK, lower_s=UPSTREAM[0])
    try:
        lab.log("access-log ts is %.2fs after the DROP" % (lab.parse_ts(rec["ts"]) - dropped))
    except (KeyError, ValueError) as e:
        lab.log("access-log ts unparsable: %s" % e)
    if "detect_ms" in rec:
        t.check_within("detect_ms (last segment from server -> declared dead)",
                       rec["detect_ms"] / 1000.0, bound, SLACK, lower_s=UPSTREAM[0])
    t.check(r.status == "RESET", "client observes RESET (ECONNRESET) (got %s)" % r)
    t.check(rec["bytes_from_client"] == 1000 and rec["bytes_to_client"] == 1000,
            "byte counts 1000/1000 (got %s/%s)" % (rec["bytes_from_client"], rec["bytes_to_client"]))


if __name__ == "__main__":
    lab.run(main, __doc__)
