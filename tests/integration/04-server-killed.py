#!/usr/bin/env python3
"""A server killed with -9 right after sending is an orderly close, not a failure: its kernel sends the data and a FIN, the proxy logs upstream_fin, and the client receives every byte and then an orderly EOF.

The client does not read until after the kill, so the 100000 bytes are
still queued in the proxy or the sockets when the FIN arrives: the proxy
must flush them before passing the FIN on.  The server has read all the
client sent, so its kernel closes with FIN, not RST.
"""
import lab

N = 100000


def main(t):
    srv = t.server()
    t.start_kaproxy({"t": lab.listener()})
    cli = t.pair(srv)
    cli.ok("send 5000")
    srv.ok("expect 5000")
    srv.ok("send %d 10" % N)
    srv.kill9()

    r = cli.cmd("expect %d 10" % N, timeout=15)
    t.check(r.status == "OK", "client receives all %d bytes sent before the kill (%s)" % (N, r))
    r = cli.cmd("wait_close 5", timeout=10)
    t.check(r.status == "EOF" and r["extra"] == "0", "then an orderly EOF (%s)" % r)
    cli.ok("close")

    rec = t.access_log.wait(lambda r: r.get("listener") == "t", 10, "the access-log line of t")
    t.check(rec["close_reason"] == "upstream_fin", "close_reason upstream_fin (got %r, detail %r)"
            % (rec["close_reason"], rec.get("detail")))
    t.check(rec["teardown"] in ("none", "fin"), "teardown none or fin (got %r)" % rec["teardown"])
    t.check(rec["bytes_to_client"] == N and rec["bytes_from_client"] == 5000,
            "byte counts %d/5000 (got %s/%s)" % (N, rec["bytes_to_client"], rec["bytes_from_client"]))


if __name__ == "__main__":
    lab.run(main, __doc__)
