#!/usr/bin/env python3
"""An upstream that refuses the connection is logged as connect_failed and the client gets an RST; with two upstreams where the first refuses, the proxy fails over to the second and carries data.

Listener a points at 10.77.2.2:7009 where nothing listens (the server's
kernel answers RST: ECONNREFUSED).  Listener b lists 7009 then 7001 with
balance = first.
"""
import lab

REFUSING = "10.77.2.2:7009"


def main(t):
    srv = t.server()
    t.start_kaproxy({
        "a": lab.listener(listen="10.77.1.1:7000", upstream=REFUSING),
        "b": lab.listener(listen="10.77.1.1:7001", upstream="%s, 10.77.2.2:7001" % REFUSING,
                          balance="first"),
    })

    cli = t.client()
    r = cli.cmd("connect 10.77.1.1:7000 5")
    if r.status == "OK":
        r = cli.cmd("wait_close 5", timeout=10)
    elif r.get("errno") == "ECONNRESET":
        # The refusal is so fast that the proxy's RST can land before
        # connect() returns: the handshake completed (a refused SYN would
        # be ECONNREFUSED), then the connection was reset.
        r = lab.Reply("RESET extra=0 errno=ECONNRESET during=connect")
        lab.log("connect itself saw the RST: %s" % r)
    rec = t.access_log.wait(lambda r: r.get("listener") == "a", 10, "the access-log line of a")
    t.check(rec["close_reason"] == "connect_failed", "a: close_reason connect_failed (got %r, detail %r)"
            % (rec["close_reason"], rec.get("detail")))
    lab.log("a: detail %r, teardown %r" % (rec.get("detail"), rec.get("teardown")))
    t.check(r.status == "RESET", "a: client observes RESET (got %s)" % r)
    t.check(rec["bytes_from_client"] == 0 and rec["bytes_to_client"] == 0, "a: no bytes moved")

    cli2 = t.pair(srv, target="10.77.1.1:7001", name="client-b")
    cli2.ok("send 20000")
    srv.ok("expect 20000")
    srv.ok("send 30000")
    cli2.ok("expect 30000")
    cli2.ok("shutdown_wr")
    r = srv.cmd("wait_close 5", timeout=10)
    t.check(r.status == "EOF", "b: server gets the client's FIN (%s)" % r)
    srv.ok("close")
    r = cli2.cmd("wait_close 5", timeout=10)
    t.check(r.status == "EOF" and r["extra"] == "0", "b: client gets an orderly EOF (%s)" % r)
    rec = t.access_log.wait(lambda r: r.get("listener") == "b", 10, "the access-log line of b")
    t.check(rec["upstream"] == "10.77.2.2:7001", "b: failed over to 10.77.2.2:7001 (got %r)" % rec["upstream"])
    t.check(rec["close_reason"] == "client_fin", "b: close_reason client_fin (got %r)" % rec["close_reason"])
    t.check(rec["bytes_from_client"] == 20000 and rec["bytes_to_client"] == 30000,
            "b: byte counts 20000/30000 (got %s/%s)" % (rec["bytes_from_client"], rec["bytes_to_client"]))


if __name__ == "__main__":
    lab.run(main, __doc__)
