#!/usr/bin/env python3
"""The admin endpoint shows what kaproxy sees: /connections lists a live connection with both legs' TCP_INFO and shows keepalive probes counting up on a leg whose peer went silent, before it is declared dead; /metrics then counts the upstream_timeout and its detection time and passes promtool; /healthz is 200 while serving and 503 while draining; other paths and methods get 404/405.
"""
import json
import os
import shutil
import signal
import subprocess
import time

import lab

ADMIN = "127.0.0.1:9901"
UPSTREAM = (2, 1, 3)   # bound 5 s: probes at 2, 3, 4 s, dead at 5 s


def http(t, path, method="GET"):
    r = t.run("proxy", ["curl", "-s", "-X", method, "-o", "-", "-w", "\n%{http_code}",
                        "http://%s%s" % (ADMIN, path)], check=False, timeout=10)
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), body


def metric(text, name_and_labels):
    for line in text.splitlines():
        if line.startswith(name_and_labels + " "):
            return float(line.split()[-1])
    return None


def main(t):
    srv = t.server()
    px = t.start_kaproxy({"t": lab.listener(upstream_policy=UPSTREAM, client=(30, 5, 3))},
                         {"admin_listen": ADMIN, "shutdown_timeout": "3s"})
    lab.wait_until(lambda: http(t, "/healthz")[0] == 200, 5, "admin to answer")
    code, body = http(t, "/healthz")
    t.check(code == 200 and body.strip() == "ok", "/healthz 200 ok (%s %r)" % (code, body))
    t.check(http(t, "/nope")[0] == 404, "unknown path: 404")
    t.check(http(t, "/metrics", "POST")[0] == 405, "POST /metrics: 405")
    t.check(http(t, "/connections?limit=0")[0] == 400, "limit=0: 400")
    r = t.run("proxy", ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                        "X-Big: " + "x" * 9000, "http://%s/healthz" % ADMIN], check=False, timeout=10)
    t.check(r.stdout.strip() != "200", "a request with 9 KB of headers is refused (%r)" % r.stdout)

    cli = t.pair(srv)
    t.exchange(cli, srv)
    code, body = http(t, "/connections")
    conns = json.loads(body)
    t.check(code == 200 and len(conns) == 1, "/connections lists the one connection (%s)" % body)
    c = conns[0]
    t.check(c["listener"] == "t" and c["bytes_from_client"] == 1000 and c["bytes_to_client"] == 1000,
            "listener and byte counts in /connections")
    t.check(c["client_tcp"]["state"] == "established" and "rtt_us" in c["upstream_tcp"],
            "both legs carry TCP_INFO")
    t.check(json.loads(http(t, "/connections?listener=other")[1]) == [], "?listener= filters")

    dropped = t.drop_all("server")
    seen = []
    deadline = time.time() + 10
    while time.time() < deadline:
        conns = json.loads(http(t, "/connections")[1])
        if not conns:
            break
        p = conns[0]["upstream_tcp"]["probes"]
        if not seen or seen[-1] != p:
            seen.append(p)
            lab.log("upstream probes %d at %.2fs after the DROP" % (p, time.time() - dropped))
        time.sleep(0.1)
    t.check(len([p for p in seen if p > 0]) >= 2 and seen == sorted(seen),
            "probes count up on the silent leg before it is declared dead (%s)" % seen)
    rec = t.access_log.wait(lambda r: r["listener"] == "t", 10)
    t.check(rec["close_reason"] == "upstream_timeout", "then upstream_timeout (%s)" % rec["close_reason"])

    code, text = http(t, "/metrics")
    t.check(code == 200, "/metrics 200")
    checks = {
        'kaproxy_connections_closed_total{listener="t",reason="upstream_timeout"}': 1,
        'kaproxy_connections_total{listener="t"}': 1,
        'kaproxy_connections_active{listener="t"}': 0,
        'kaproxy_bytes_total{listener="t",direction="from_client"}': 1000,
        'kaproxy_dead_peer_detection_seconds_count{listener="t",side="upstream"}': 1,
        'kaproxy_upstream_connect_duration_seconds_count{listener="t"}': 1,
    }
    for k, want in checks.items():
        t.check(metric(text, k) == want, "%s == %s (got %s)" % (k, want, metric(text, k)))
    det = metric(text, 'kaproxy_dead_peer_detection_seconds_sum{listener="t",side="upstream"}')
    t.check(det is not None and UPSTREAM[0] <= det <= lab.worst_case_s(UPSTREAM) + 1.5,
            "detection time sum within the policy bound (%s s)" % det)
    if shutil.which("promtool"):
        r = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=30)
        t.check(r.returncode == 0, "promtool check metrics passes (%s)" %
                (r.stdout + r.stderr).decode().strip())
    else:
        lab.log("promtool not installed: exposition format not checked by promtool")

    t.undrop("server")
    srv2 = t.server(listen="%s:7001" % lab.SERVER_IP, name="server2") if not srv.alive() else srv
    cli2 = t.pair(srv2, name="client2")
    os.kill(px.pid, signal.SIGTERM)
    lab.wait_until(lambda: "draining" in px.stderr_text(100000), 5, "the drain to start")
    code, body = http(t, "/healthz")
    t.check(code == 503, "/healthz 503 while draining (%s %r)" % (code, body))
    px.popen.wait(timeout=10)
    t.kaproxy = None  # the drain's exit is expected
    cli2.ok("quit")


if __name__ == "__main__":
    lab.run(main, __doc__)
