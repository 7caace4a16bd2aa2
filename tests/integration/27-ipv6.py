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
    local = cli.ok("connect %s 5" % LISTEN)["local"]
    srv.ok("accept 5")
    t.exchange(cli, srv, 100000)
    t.half_close(cli, srv, 5000)
    t.check(local.startswith("[::1]:"), "the client's address is [v6]:port (%s)" % local)
    t.check_closed(t.access_log.of("six"), "client_fin", "none", client=local, upstream=UPSTREAM,
                   bytes_from_client=100000, bytes_to_client=105000)

    t.check_reset(t.peer("proxy", "client6-refused"), "[::1]:7102", "a refusing v6 upstream")
    t.check_closed(t.access_log.of("refused"), "connect_failed", "rst", upstream=REFUSING)


if __name__ == "__main__":
    lab.run(main, __doc__)
