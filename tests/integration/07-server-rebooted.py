#!/usr/bin/env python3
"""A server that reboots while the connection is idle (it comes back with the same address and no TCP state) is found by the first keepalive probe, which it answers with RST: the proxy logs upstream_reset within the keepalive idle time and resets the client.

The reboot silences the server's namespace, kills its processes, deletes
the namespace and its link and builds them again, so nothing (no FIN, no
RST) leaves the old stack.  Upstream policy 1s/1s/2: the first probe goes
out about 1 s after the last segment.
"""
import lab

UPSTREAM = (1, 1, 2)
SLACK = 1.5


def main(t):
    srv = t.server()
    t.start_kaproxy({"t": lab.listener(client=(3, 1, 3), upstream_policy=UPSTREAM)})
    cli = t.pair(srv)
    t.exchange(cli, srv)

    t.reboot("server")
    rebooted = lab.time.time()
    rec, r = t.close_of("t", cli, 10)
    t.check(rec["close_reason"] == "upstream_reset",
            "close_reason upstream_reset (got %r, detail %r)" % (rec["close_reason"], rec.get("detail")))
    t.check_within("rebooted server found, reboot -> access-log line",
                   rec["_seen"] - rebooted, UPSTREAM[0], SLACK)
    t.check(rec["teardown"] == "rst", "teardown rst (got %r)" % rec["teardown"])
    t.check(r.status == "RESET", "client observes RESET (got %s)" % r)


if __name__ == "__main__":
    lab.run(main, __doc__)
