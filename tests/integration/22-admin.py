#!/usr/bin/env python3
"""The admin endpoint shows what kaproxy sees: /connections lists a live connection with both legs' TCP_INFO and shows keepalive probes counting up on a leg whose peer went silent, before it is declared dead; /metrics then counts the upstream_timeout and its detection time and passes promtool; /healthz is 200 while serving and 503 while draining; other paths and methods get 404/405.
"""
import shutil
import subprocess
import time

import lab

UPSTREAM = (2, 1, 3)   # bound 5 s: probes at 2, 3, 4 s, dead at 5 s


def probes_while_dying(admin, dropped):
    """Each new upstream probe count /connections shows, until the dead
    connection leaves it (within the policy's bound)."""
    seen = []

    def gone():
        conns = admin.json("/connections")
        if conns and conns[0]["upstream_tcp"]["probes"] not in seen[-1:]:
            seen.append(conns[0]["upstream_tcp"]["probes"])
            lab.log("upstream probes %d at %.2fs after the DROP" % (seen[-1], time.time() - dropped))
        return not conns
    lab.wait_until(gone, dropped + lab.worst_case_s(UPSTREAM) + lab.SLACK - time.time(),
                   "the dead connection to leave /connections", interval=0.1)
    return seen


def main(t):
    srv = t.server()
    px = t.start_kaproxy({"t": lab.listener(upstream_policy=UPSTREAM, client=(30, 5, 3))},
                         {"admin_listen": lab.ADMIN_LISTEN, "shutdown_timeout": "3s"})
    admin = lab.Admin(t)
    code, body = admin.request("/healthz")
    t.check(code == 200 and body.strip() == "ok", "/healthz 200 ok (%s %r)" % (code, body))
    t.check(admin.request("/nope")[0] == 404, "unknown path: 404")
    t.check(admin.request("/metrics", "POST")[0] == 405, "POST /metrics: 405")
    t.check(admin.request("/connections?limit=0")[0] == 400, "limit=0: 400")
    code, _ = admin.request("/healthz", headers=["X-Big: " + "x" * 9000])
    t.check(code not in (0, 200), "a request with 9 KB of headers is refused (%s)" % code)

    cli = t.pair(srv)
    t.exchange(cli, srv)
    conns = admin.json("/connections")
    t.check(len(conns) == 1, "/connections lists the one connection (%s)" % conns)
    c = conns[0]
    t.check(c["listener"] == "t" and c["bytes_from_client"] == 1000 and c["bytes_to_client"] == 1000,
            "listener and byte counts in /connections")
    t.check(c["client_tcp"]["state"] == "established" and "rtt_us" in c["upstream_tcp"],
            "both legs carry TCP_INFO")
    t.check(admin.json("/connections?listener=other") == [], "?listener= filters")

    seen = probes_while_dying(admin, t.drop_all("server"))
    t.check(len([p for p in seen if p > 0]) >= 2 and seen == sorted(seen),
            "probes count up on the silent leg before it is declared dead (%s)" % seen)
    t.check_closed(t.access_log.of("t"), "upstream_timeout", "rst")

    text = admin.get("/metrics")
    metrics = lab.parse_metrics(text)
    checks = {
        'kaproxy_connections_closed_total{listener="t",reason="upstream_timeout"}': 1,
        'kaproxy_connections_total{listener="t"}': 1,
        'kaproxy_connections_active{listener="t"}': 0,
        'kaproxy_bytes_total{listener="t",direction="from_client"}': 1000,
        'kaproxy_dead_peer_detection_seconds_count{listener="t",side="upstream"}': 1,
        'kaproxy_upstream_connect_duration_seconds_count{listener="t"}': 1,
    }
    for k, want in checks.items():
        t.check(metrics.get(k) == want, "%s == %s (got %s)" % (k, want, metrics.get(k)))
    det = metrics.get('kaproxy_dead_peer_detection_seconds_sum{listener="t",side="upstream"}')
    t.check(det is not None and UPSTREAM[0] <= det <= lab.worst_case_s(UPSTREAM) + lab.SLACK,
            "detection time sum within the policy bound (%s s)" % det)
    # The real counterpart checks the format: its absence is a failure, not a pass.
    t.check(shutil.which("promtool") is not None,
            "promtool is installed (tools/install-deps.sh installs Debian's prometheus)")
    r = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=30)
    t.check(r.returncode == 0, "promtool check metrics passes (%s)" %
            (r.stdout + r.stderr).decode().strip())

    t.undrop("server")
    srv2 = t.server(listen="%s:7001" % lab.SERVER_IP, name="server2") if not srv.alive() else srv
    cli2 = t.pair(srv2, name="client2")
    px.drain()
    code, body = admin.request("/healthz")
    t.check(code == 503, "/healthz 503 while draining (%s %r)" % (code, body))
    t.wait_kaproxy_exit()
    cli2.ok("quit")


if __name__ == "__main__":
    lab.run(main, __doc__)
