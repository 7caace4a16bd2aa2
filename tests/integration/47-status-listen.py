#!/usr/bin/env python3
"""status_listen serves probes and scrapers on a network address while the admin endpoint stays on loopback: from the client namespace, /healthz is 200 (503 while draining) and /metrics is 200 and passes promtool, under any Host; /connections, the close route, / and /closed (the live page's) are refused with 404 and counted, and the connection named in the close request lives on; the admin on loopback still serves everything and is not reachable from the client; a reload that moves it warns and changes nothing until the next start.
"""
import shutil
import subprocess

import lab

STATUS_LISTEN = "%s:9902" % lab.PROXY_CLIENT_IP


def main(t):
    srv = t.server()
    listeners = {"t": lab.listener(client=(30, 5, 3), upstream_policy=(30, 5, 3))}
    keys = {"admin_listen": lab.ADMIN_LISTEN, "status_listen": STATUS_LISTEN,
            "shutdown_timeout": "3s"}
    px = t.start_kaproxy(listeners, keys)
    status = lab.Admin(t, STATUS_LISTEN, role="client")
    admin = lab.Admin(t)

    code, body = status.request("/healthz")
    t.check(code == 200 and body.strip() == "ok", "/healthz from the client: 200 ok (%s %r)"
            % (code, body))
    # Prometheus scraping by a name, a kubelet by the pod's address: no Host check here.
    code, _ = status.request("/healthz", headers=["Host: kaproxy.example.svc:9902"])
    t.check(code == 200, "/healthz under a Host that is not the address: 200 (%s)" % code)
    code, head = status.request("/healthz", "HEAD")
    t.check(code == 200 and "content-length: 3" in head.lower(),
            "HEAD /healthz: 200 with the GET's length (%s %r)" % (code, head))

    cli = t.pair(srv)
    t.exchange(cli, srv)
    conns = admin.json("/connections")
    t.check(len(conns) == 1, "the admin on loopback lists the connection (%s)" % conns)
    cid = conns[0]["id"]

    code, text = status.request("/metrics")
    t.check(code == 200, "/metrics from the client: 200 (%s)" % code)
    metrics = lab.parse_metrics(text) if code == 200 else {}
    t.check(metrics.get('kaproxy_connections_total{listener="t"}') == 1,
            "the scrape counts the connection (%s)"
            % metrics.get('kaproxy_connections_total{listener="t"}'))
    t.check(metrics.get("kaproxy_status_connections") == 1,
            "the scrape's own connection is the status address's one open (%s)"
            % metrics.get("kaproxy_status_connections"))
    # The real counterpart checks the format: its absence is a failure, not a pass.
    t.check(shutil.which("promtool") is not None,
            "promtool is installed (tools/install-deps.sh installs Debian's prometheus)")
    r = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=30)
    t.check(r.returncode == 0, "promtool check metrics passes on the status scrape (%s)" %
            (r.stdout + r.stderr).decode().strip())

    refused = [("/connections", "GET"), ("/connections?limit=5", "GET"),
               ("/connections/%d/close" % cid, "POST"), ("/", "GET"), ("/closed", "GET"), ("/nope", "GET")]
    for path, method in refused:
        code, body = status.request(path, method)
        t.check(code == 404 and "connections" not in body,
                "%s %s from the client: 404, no admin path named (%s %r)"
                % (method, path, code, body))
    # The close request changed nothing: the connection still forwards.
    t.exchange(cli, srv, 100)
    t.check([c["id"] for c in admin.json("/connections")] == [cid],
            "connection %d is still open after the refused close" % cid)

    code, _ = lab.Admin(t, "%s:9901" % lab.PROXY_CLIENT_IP, role="client").request("/healthz")
    t.check(code == 0, "the admin is not on the client-side address (%s)" % code)
    m = admin.metrics()
    want = len(refused)
    t.check(m.get('kaproxy_status_requests_refused_total{code="404"}') == want,
            "the admin's /metrics counts the %d refusals on the status address (%s)"
            % (want, m.get('kaproxy_status_requests_refused_total{code="404"}')))
    t.check(m.get('kaproxy_admin_requests_refused_total{code="404"}') == 0,
            "and none on the admin's own (%s)"
            % m.get('kaproxy_admin_requests_refused_total{code="404"}'))
    code, body = admin.request("/connections/%d/close" % cid, "POST")
    t.check(code == 200 and '"closed":true' in body,
            "the admin on loopback closes the connection (%s %r)" % (code, body))
    t.check_closed(t.access_log.of("t"), "admin", "rst")

    # A reload cannot move it: it says so, and the address serves on.
    px.reload(t.kaproxy_ini(listeners, dict(keys, status_listen="%s:9903" % lab.PROXY_CLIENT_IP)))
    px.wait_log("reloaded")
    px.wait_log("reload: status_listen changes take effect at the next start")
    t.check(status.request("/healthz")[0] == 200, "after the reload it still serves on %s"
            % STATUS_LISTEN)
    moved = lab.Admin(t, "%s:9903" % lab.PROXY_CLIENT_IP, role="client")
    t.check(moved.request("/healthz")[0] == 0, "and nothing listens on the new address yet")

    cli2 = t.pair(srv, name="client2")
    px.drain()
    code, body = status.request("/healthz")
    t.check(code == 503 and body.strip() == "draining",
            "/healthz from the client: 503 while draining (%s %r)" % (code, body))
    t.close_pair(cli2, srv)
    t.wait_kaproxy_exit()


if __name__ == "__main__":
    lab.run(main, __doc__)
