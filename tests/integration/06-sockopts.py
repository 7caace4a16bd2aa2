#!/usr/bin/env python3
"""The live proxy's sockets carry the configured per-leg policy: SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT (auto = idle + interval*count, explicit, or off) and TCP_NODELAY, read back from kaproxy's own connected sockets on both legs.

The sockets are duplicated out of the running kaproxy with pidfd_open(2) +
pidfd_getfd(2) and queried with getsockopt; each leg is found through
/proc/PID/fd and /proc/PID/net/tcp by its addresses.  Every value differs
between legs and listeners, so a value applied to the wrong socket shows.
"""
import socket

import lab

# listener t: both legs on, client user timeout auto, upstream explicit.
T_CLIENT, T_UPSTREAM = (3, 2, 4), (5, 1, 2)
# listener u: client keepalive off (user timeout auto still bounds it),
# upstream user timeout off.
U_CLIENT, U_UPSTREAM = (4, 2, 3), (2, 3, 5)


def expected(policy, keepalive=True, user_timeout_ms=None):
    idle, intvl, cnt = policy
    e = {"SO_KEEPALIVE": int(keepalive), "TCP_NODELAY": 1,
         "TCP_USER_TIMEOUT": (idle + intvl * cnt) * 1000 if user_timeout_ms is None else user_timeout_ms}
    if keepalive:  # the three timers matter (and are checked) only when keepalive is on
        e.update(TCP_KEEPIDLE=idle, TCP_KEEPINTVL=intvl, TCP_KEEPCNT=cnt)
    return e


OPTS = {
    "SO_KEEPALIVE": (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    "TCP_KEEPIDLE": (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
    "TCP_KEEPINTVL": (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
    "TCP_KEEPCNT": (socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
    "TCP_USER_TIMEOUT": (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
    "TCP_NODELAY": (socket.IPPROTO_TCP, socket.TCP_NODELAY),
}


def read_opts(pid, fd):
    dup = lab.steal_fd(pid, fd)
    s = socket.socket(fileno=dup)
    try:
        return {name: s.getsockopt(level, opt) for name, (level, opt) in OPTS.items()}
    finally:
        s.close()  # only our duplicate


def one(socks, what, pred):
    found = [s for s in socks if s["state"] == "ESTABLISHED" and pred(s)]
    if len(found) != 1:
        raise lab.Failure("expected one kaproxy socket for %s, found %s (all: %s)"
                          % (what, found, socks))
    return found[0]


def main(t):
    srv = t.server()
    px = t.start_kaproxy({
        "t": lab.listener(listen="10.77.1.1:7000", client=T_CLIENT, upstream_policy=T_UPSTREAM,
                          upstream_user_timeout="7500ms"),
        "u": lab.listener(listen="10.77.1.1:7002", client=U_CLIENT, upstream_policy=U_UPSTREAM,
                          client_keepalive="off", upstream_user_timeout="off"),
    })
    legs = []
    for name, port, cpol, upol, ckw, ukw in (
            ("t", 7000, T_CLIENT, T_UPSTREAM, {}, {"user_timeout_ms": 7500}),
            ("u", 7002, U_CLIENT, U_UPSTREAM, {"keepalive": False}, {"user_timeout_ms": 0})):
        cli = t.client("client-" + name)
        local = cli.ok("connect 10.77.1.1:%d 5" % port)["local"]
        upstream_local = srv.ok("accept 5")["peer"]
        cli.ok("send 10")   # the session is fully set up once bytes flow
        srv.ok("expect 10")
        legs.append(("%s client leg" % name, lambda s, local=local, port=port:
                     s["local"] == "10.77.1.1:%d" % port and s["remote"] == local,
                     expected(cpol, **ckw)))
        legs.append(("%s upstream leg" % name, lambda s, ul=upstream_local:
                     s["local"] == ul and s["remote"] == "10.77.2.2:7001",
                     expected(upol, **ukw)))

    socks = t.proxy_sockets(px)
    bad = []
    for what, pred, want in legs:
        s = one(socks, what, pred)
        got = read_opts(px.pid, s["fd"])
        for name, value in want.items():
            mark = "ok " if got[name] == value else "BAD"
            print("  %s %-16s %-17s configured %-6s live %s" % (mark, what, name, value, got[name]))
            if got[name] != value:
                bad.append("%s %s: configured %s, live %s" % (what, name, value, got[name]))
    t.check(not bad, "live socket options match the policy" + ("" if not bad else ": " + "; ".join(bad)))


if __name__ == "__main__":
    lab.run(main, __doc__)
