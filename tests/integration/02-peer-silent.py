#!/usr/bin/env python3
"""A peer that goes silent while idle (powered off / path broken: every packet dropped) is declared dead by its own leg's keepalive within idle + interval*count, logged as upstream_timeout or client_timeout, and the other peer gets an RST (ECONNRESET); each leg uses its own policy.

The dying leg's policy is 1s/1s/2 (bound 3 s) and the other leg's 3s/1s/3
(bound 6 s), so a proxy applying the wrong leg's values fails the bound.
First the server goes silent (listener "up"), then the client (listener
"cl").  Detection is measured from the DROP to the access-log line.
"""
import lab

FAST = (1, 1, 2)
SLOW = (3, 1, 3)
SLACK = 1.5


def dies(t, name, silent, watcher, leg):
    """silent's namespace goes quiet; check the verdict on leg and watcher's RST."""
    dropped = t.drop_all(silent)
    bound = lab.worst_case_s(FAST)
    rec, r = t.close_of(name, watcher, bound + 10)
    t.check(rec["close_reason"] == leg + "_timeout",
            "close_reason %s_timeout (got %r, detail %r)" % (leg, rec["close_reason"], rec.get("detail")))
    t.check(rec["teardown"] == "rst", "teardown rst (got %r)" % rec["teardown"])
    t.check_within("%s dead-peer detection, DROP -> access-log line" % leg,
                   rec["_seen"] - dropped, bound, SLACK, lower_s=FAST[0])
    if "detect_ms" in rec:
        t.check_within("detect_ms (last segment from the %s -> declared dead)" % leg,
                       rec["detect_ms"] / 1000.0, bound, SLACK, lower_s=FAST[0])
    t.check(r.status == "RESET", "the other peer observes RESET (ECONNRESET) (got %s)" % r)
    t.check(rec["bytes_from_client"] == 1000 and rec["bytes_to_client"] == 1000,
            "byte counts 1000/1000 (got %s/%s)" % (rec["bytes_from_client"], rec["bytes_to_client"]))
    t.undrop(silent)


def main(t):
    srv = t.server()
    t.start_kaproxy({
        "up": lab.listener(client=SLOW, upstream_policy=FAST),
        "cl": lab.listener(listen="%s:7010" % lab.PROXY_CLIENT_IP, client=FAST, upstream_policy=SLOW),
    })
    cli = t.pair(srv)
    t.exchange(cli, srv)
    dies(t, "up", "server", cli, "upstream")

    cli2 = t.pair(srv, target="%s:7010" % lab.PROXY_CLIENT_IP, name="client2")
    t.exchange(cli2, srv)
    dies(t, "cl", "client", srv, "client")


if __name__ == "__main__":
    lab.run(main, __doc__)
