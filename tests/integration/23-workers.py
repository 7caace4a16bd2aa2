#!/usr/bin/env python3
"""workers = 2 runs two event loops on SO_REUSEPORT sockets and still behaves as one proxy: connections are spread over both and all forward, /connections and /metrics show every connection whichever loop holds it, max_connections caps the total over both, a reload reaches both, and a drain stops both and exits 0.
"""
import json
import os
import signal

import lab

ADMIN = "127.0.0.1:9901"
N = 24


def http(t, path):
    r = t.run("proxy", ["curl", "-s", "http://%s%s" % (ADMIN, path)], timeout=10)
    return r.stdout


def main(t):
    srv = t.server(backlog=64)
    px = t.start_kaproxy({"t": lab.listener()},
                         {"workers": "2", "admin_listen": ADMIN, "max_connections": str(N)})
    threads = len(os.listdir("/proc/%d/task" % px.pid))
    t.check(threads >= 2, "kaproxy runs %d threads for 2 workers" % threads)

    clients = []
    for i in range(N):
        c = t.pair(srv, name="client%d" % i)
        t.exchange(c, srv, 100)
        clients.append(c)
    conns = json.loads(http(t, "/connections?limit=1000"))
    t.check(len(conns) == N, "/connections lists all %d connections (got %d)" % (N, len(conns)))
    by_worker = {}
    for c in conns:
        by_worker[c["worker"]] = by_worker.get(c["worker"], 0) + 1
    t.check(set(by_worker) == {0, 1}, "both workers hold connections (%s)" % by_worker)
    metrics = http(t, "/metrics")
    t.check('kaproxy_connections_active{listener="t"} %d\n' % N in metrics,
            "kaproxy_connections_active sums both workers to %d" % N)

    extra = t.client("client-extra")
    r = extra.cmd("connect %s:7000 5" % lab.PROXY_CLIENT_IP)
    if r.status == "OK":
        r = extra.cmd("wait_close 5", timeout=10)
    t.check(r.status == "RESET" or r.get("errno") == "ECONNRESET",
            "connection %d is reset: max_connections counts over both workers (%s)" % (N + 1, r))

    os.kill(px.pid, signal.SIGHUP)
    lab.wait_until(lambda: "reloaded" in px.stderr_text(100000), 5, "the reload")
    metrics = http(t, "/metrics")
    t.check('kaproxy_config_reloads_total{result="success"} 1' in metrics, "reload applied")

    for c in clients[:4]:
        c.ok("close")
    os.kill(px.pid, signal.SIGTERM)
    status = px.popen.wait(timeout=15)
    t.check(status == 0, "both workers drain and kaproxy exits 0 (got %s)" % status)
    t.kaproxy = None
    recs = t.access_log.wait(lambda r: r["close_reason"] == "shutdown", 5)
    t.check(recs is not None, "connections left at the deadline are closed with reason shutdown")


if __name__ == "__main__":
    lab.run(main, __doc__)
