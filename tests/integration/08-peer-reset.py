#!/usr/bin/env python3
"""An RST from either peer is passed on as an RST at once: a client that aborts (SO_LINGER {1,0}) is logged client_reset and the server observes ECONNRESET; a server that aborts is logged upstream_reset and the client observes ECONNRESET.
"""
import lab


def main(t):
    srv = t.server()
    t.start_kaproxy({"t": lab.listener()})

    cli = t.pair(srv)
    cli.ok("send 2000")
    srv.ok("expect 2000")
    cli.ok("rst_close")
    r = srv.cmd("wait_close 5", timeout=10)
    rec = t.access_log.wait(lambda r: r.get("id") is not None, 10, "the first access-log line")
    t.check(rec["close_reason"] == "client_reset", "client abort: close_reason client_reset (got %r, detail %r)"
            % (rec["close_reason"], rec.get("detail")))
    t.check(rec["teardown"] == "rst", "client abort: teardown rst (got %r)" % rec["teardown"])
    t.check(r.status == "RESET", "client abort: server observes RESET (got %s)" % r)

    cli2 = t.pair(srv, name="client2")
    srv.ok("send 3000")
    cli2.ok("expect 3000")
    srv.ok("rst_close")
    r = cli2.cmd("wait_close 5", timeout=10)
    rec = t.access_log.wait(lambda r: r["id"] != rec["id"], 10, "the second access-log line")
    t.check(rec["close_reason"] == "upstream_reset", "server abort: close_reason upstream_reset (got %r, detail %r)"
            % (rec["close_reason"], rec.get("detail")))
    t.check(rec["teardown"] == "rst", "server abort: teardown rst (got %r)" % rec["teardown"])
    t.check(r.status == "RESET", "server abort: client observes RESET (got %s)" % r)


if __name__ == "__main__":
    lab.run(main, __doc__)
