#!/usr/bin/env python3
"""An upstream that never answers the SYN is given up after connect_timeout: alone it is logged connect_timeout and the client gets an RST; listed first of two (balance = first), the proxy moves on to the second after connect_timeout and carries data.

The server namespace drops SYNs to port 7009 only (a filtered port: no RST,
no ICMP); 7001 works.  connect_timeout = 1s.
"""
import time

import lab

SILENT = "%s:7009" % lab.SERVER_IP
WORKING = "%s:7001" % lab.SERVER_IP
SLACK = 1.0


def main(t):
    srv = t.server()
    t.run("server", ["iptables", "-w", "5", "-I", "INPUT", "-p", "tcp", "--dport", "7009", "-j", "DROP"])
    t.start_kaproxy({
        "c": lab.listener(listen="10.77.1.1:7000", upstream=SILENT, connect_timeout="1s"),
        "f": lab.listener(listen="10.77.1.1:7001", upstream="%s, %s" % (SILENT, WORKING),
                          balance="first", connect_timeout="1s"),
    })

    cli = t.client()
    t.check(cli.cmd("connect 10.77.1.1:7000 5").status == "OK", "client connected to the proxy")
    t0 = time.time()
    rec, r = t.close_of("c", cli, 5)
    t.check(rec["close_reason"] == "connect_timeout", "c: close_reason connect_timeout (got %r, detail %r)"
            % (rec["close_reason"], rec.get("detail")))
    t.check_within("connect_timeout, accept -> access-log line", rec["_seen"] - t0, 1.0, SLACK, lower_s=0.8)
    t.check(r.status == "RESET", "c: client observes RESET (got %s)" % r)

    cli2 = t.client("client-f")
    cli2.ok("connect 10.77.1.1:7001 5")
    t0 = time.time()
    srv.ok("accept 5")
    t.check_within("failover after connect_timeout, accept -> second upstream connected",
                   time.time() - t0, 1.0, SLACK, lower_s=0.8)
    t.exchange(cli2, srv, 5000)
    cli2.ok("shutdown_wr")
    t.check(srv.cmd("wait_close 5", timeout=10).status == "EOF", "f: server gets the client's FIN")
    srv.ok("close")
    t.check(cli2.cmd("wait_close 5", timeout=10).status == "EOF", "f: client gets an orderly EOF")
    rec = t.access_log.wait(lambda r: r.get("listener") == "f", 10, "the access-log line of f")
    t.check(rec["upstream"] == WORKING, "f: failed over to %s (got %r)" % (WORKING, rec["upstream"]))
    t.check(rec["close_reason"] == "client_fin", "f: close_reason client_fin (got %r)" % rec["close_reason"])
    t.check(rec["bytes_from_client"] == 5000 and rec["bytes_to_client"] == 5000,
            "f: byte counts 5000/5000 (got %s/%s)" % (rec["bytes_from_client"], rec["bytes_to_client"]))


if __name__ == "__main__":
    lab.run(main, __doc__)
