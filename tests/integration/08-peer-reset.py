#!/usr/bin/env python3
"""An RST from either peer is passed on as an RST at once: a client that aborts (SO_LINGER {1,0}) is logged client_reset and the server observes ECONNRESET; a server that aborts is logged upstream_reset and the client observes ECONNRESET.

The client aborts on listener c (port 7000), the server on listener u (port
7010), each right after its own bytes have reached the other peer.
"""
import lab

# leg whose peer aborts: (listener, port, bytes it sends first)
ABORTS = {"client": ("c", 7000, 2000), "upstream": ("u", 7010, 3000)}


def aborts(t, srv, leg):
    name, port, n = ABORTS[leg]
    cli = t.pair(srv, target="%s:%d" % (lab.PROXY_CLIENT_IP, port), name="client-" + name)
    aborter, watcher = (cli, srv) if leg == "client" else (srv, cli)
    aborter.ok("send %d" % n)
    watcher.ok("expect %d" % n)
    aborter.ok("rst_close")
    rec, r = t.close_of(name, watcher, 5)
    t.check_closed(rec, leg + "_reset", "rst", bytes_from_client=n if leg == "client" else 0,
                   bytes_to_client=n if leg == "upstream" else 0)
    t.check(r.status == "RESET", "%s abort: the other peer observes RESET (got %s)" % (leg, r))


def main(t):
    srv = t.server()
    t.start_kaproxy({name: lab.listener(listen="%s:%d" % (lab.PROXY_CLIENT_IP, port))
                     for name, port, _ in ABORTS.values()})
    for leg in ABORTS:
        aborts(t, srv, leg)


if __name__ == "__main__":
    lab.run(main, __doc__)
