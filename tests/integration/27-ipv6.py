#!/usr/bin/env python3
"""IPv6 works end to end: a listener on [v6]:port forwarding to a [v6]:port upstream carries bytes both ways with half-close, logs both addresses in [v6]:port form, and resets the client of a refusing v6 upstream.

Everything runs on the proxy namespace's own loopback (::1), so no IPv6
routing is involved: the point is kaproxy's address handling.
"""
import lab

LISTEN, UPSTREAM, REFUSING = "[::1]:7100", "[::1]:7101", "[::1]:7109"


def main(t):
    srv = t.peer("proxy", "server6", listen=UPSTREAM)
    t.start_kaproxy({
        "six": lab.listener(listen=LISTEN, upstream=UPSTREAM),
        "refused": lab.listener(listen="[::1]:7102", upstream=REFUSING),
    })
    cli = t.peer("proxy", "client6")
    cli.ok("connect %s 5" % LISTEN)
    srv.ok("accept 5")
    t.exchange(cli, srv, 100000)
    cli.ok("shutdown_wr")
    r = srv.cmd("wait_close 5", timeout=10)
    t.check(r.status == "EOF", "the client's FIN reaches the server over IPv6 (%s)" % r)
    srv.ok("send 5000")
    cli.ok("expect 5000")
    srv.ok("close")
    rec = t.access_log.wait(lambda r: r["listener"] == "six", 10)
    t.check(rec["close_reason"] == "client_fin" and rec["teardown"] == "none",
            "orderly close logged (%s/%s)" % (rec["close_reason"], rec["teardown"]))
    t.check(rec["client"].startswith("[::1]:") and rec["upstream"] == UPSTREAM,
            "addresses logged as [v6]:port (%s -> %s)" % (rec["client"], rec["upstream"]))
    t.check(rec["bytes_from_client"] == 100000 and rec["bytes_to_client"] == 105000,
            "byte counts (%s/%s)" % (rec["bytes_from_client"], rec["bytes_to_client"]))

    cli2 = t.peer("proxy", "client6-refused")
    r = cli2.cmd("connect [::1]:7102 5")
    if r.status == "OK":
        r = cli2.cmd("wait_close 5", timeout=10)
    t.check(r.status == "RESET" or r.get("errno") == "ECONNRESET",
            "a refusing v6 upstream resets the client (%s)" % r)
    rec = t.access_log.wait(lambda r: r["listener"] == "refused", 10)
    t.check(rec["close_reason"] == "connect_failed", "connect_failed (%s)" % rec["close_reason"])


if __name__ == "__main__":
    lab.run(main, __doc__)
