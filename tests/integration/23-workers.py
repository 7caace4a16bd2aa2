#!/usr/bin/env python3
"""workers = 2 runs two event loops on SO_REUSEPORT sockets and still behaves as one proxy: connections are spread over both and all forward, /connections, /closed and /metrics show every connection whichever loop holds it, max_connections caps the total over both, a reload reaches both, and a drain stops both and exits 0.
"""
import os
import signal

import lab

N = 24


def main(t):
    srv = t.server(backlog=64)
    px = t.start_kaproxy({"t": lab.listener()},
                         {"workers": "2", "admin_listen": lab.ADMIN_LISTEN, "max_connections": str(N)})
    admin = lab.Admin(t)
    threads = len(os.listdir("/proc/%d/task" % px.pid))
    t.check(threads >= 2, "kaproxy runs %d threads for 2 workers" % threads)

    clients = []
    for i in range(N):
        c = t.pair(srv, name="client%d" % i)
        t.exchange(c, srv, 100)
        clients.append(c)
    conns = admin.json("/connections?limit=1000")
    t.check(len(conns) == N, "/connections lists all %d connections (got %d)" % (N, len(conns)))
    by_worker = {}
    for c in conns:
        by_worker[c["worker"]] = by_worker.get(c["worker"], 0) + 1
    t.check(set(by_worker) == {0, 1}, "both workers hold connections (%s)" % by_worker)
    active = admin.metrics().get('kaproxy_connections_active{listener="t"}')
    t.check(active == N, "kaproxy_connections_active sums both workers to %d (got %s)" % (N, active))

    t.check_reset(t.client("client-extra"), "%s:7000" % lab.PROXY_CLIENT_IP,
                  "connection %d (max_connections counts over both workers)" % (N + 1))

    px.signal(signal.SIGHUP)
    px.wait_log("reloaded")
    reloads = admin.metrics().get('kaproxy_config_reloads_total{result="success"}')
    t.check(reloads == 1, "reload applied (%s)" % reloads)

    for c in clients[:4]:
        c.ok("close")

    # /closed gathers both workers' rings: close one connection held by each.
    live = admin.json("/connections?limit=1000")
    picked = [next(c for c in live if c["worker"] == w and c["state"] == "running") for w in (0, 1)]
    for c in picked:
        code, body = admin.request("/connections/%d/close" % c["id"], "POST")
        t.check(code == 200, "closed connection %d on worker %d (%s %s)"
                % (c["id"], c["worker"], code, body.strip()))
    closed = admin.json("/closed")
    by_admin = sorted((r["worker"], r["id"]) for r in closed if r["close_reason"] == "admin")
    t.check(by_admin == sorted((c["worker"], c["id"]) for c in picked),
            "/closed lists the close on each worker (%s)" % closed)
    t.check(all(a["ts_ms"] >= b["ts_ms"] for a, b in zip(closed, closed[1:])),
            "/closed is newest first (%s)" % [r["ts_ms"] for r in closed])
    px.drain()
    t.wait_kaproxy_exit(15)
    rec = t.access_log.wait(lambda r: r["close_reason"] == "shutdown", 5)
    t.check_closed(rec, "shutdown", "rst", bytes_from_client=100, bytes_to_client=100)


if __name__ == "__main__":
    lab.run(main, __doc__)
