#!/usr/bin/env python3
"""Goal: packaging/grafana/kaproxy.json is a dashboard Grafana can import and
every query in it asks for something kaproxy exports.  It is valid JSON with
panels that each have a query, and every kaproxy_* series a query names, with
every label it matches on, is in the /metrics of a kaproxy running here
(loopback, ephemeral ports, no root) - so a renamed metric or label fails
this test instead of leaving an empty panel.

    grafana-dashboard.py KAPROXY [DASHBOARD]
"""
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT = os.path.join(HERE, "..", "..", "packaging", "grafana", "kaproxy.json")
WAIT_S = 10

failures = []


def check(cond, msg):
    print(("ok: " if cond else "FAIL: ") + msg)
    if not cond:
        failures.append(msg)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(kaproxy):
    """The /metrics text of a kaproxy with one listener, started and stopped here."""
    admin, listen, upstream = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="kaproxy-grafana-") as d:
        ini = os.path.join(d, "kaproxy.ini")
        with open(ini, "w") as f:
            f.write("[global]\nadmin_listen = 127.0.0.1:%d\naccess_log = off\n"
                    "[listener t]\nlisten = 127.0.0.1:%d\nupstream = 127.0.0.1:%d\n"
                    % (admin, listen, upstream))
        err = open(os.path.join(d, "stderr"), "w+")
        proc = subprocess.Popen([kaproxy, "-c", ini], stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + WAIT_S
            while True:
                try:
                    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin,
                                                timeout=5) as r:
                        return r.read().decode()
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        err.seek(0)
                        raise SystemExit("kaproxy did not serve /metrics within %d s "
                                         "(status %s): %s" % (WAIT_S, proc.poll(), err.read()))
                    time.sleep(0.05)   # polling a port that is not open yet: nothing to await
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            err.close()


def exported(text):
    """{series name: set of label names} of the exposition text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s", line)
        if m:
            labels = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)=\"", m.group(3) or ""))
            out.setdefault(m.group(1), set()).update(labels)
    return out


def queries(dash):
    """Every PromQL text of the dashboard: panel targets and variable queries."""
    out = []
    for p in dash.get("panels", []):
        for t in p.get("targets", []):
            out.append(("panel %r" % p.get("title"), t.get("expr", "")))
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if v.get("type") == "query":
            out.append(("variable %r" % v.get("name"), q or ""))
    return out


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    path = sys.argv[2] if len(sys.argv) > 2 else DEFAULT
    with open(path) as f:
        try:
            dash = json.load(f)
        except ValueError as e:
            check(False, "%s is valid JSON (%s)" % (path, e))
            return 1
    check(True, "%s is valid JSON" % path)
    panels = dash.get("panels", [])
    check(dash.get("title") and dash.get("uid") and len(panels) >= 6,
          "a titled dashboard with a uid and its panels (%d)" % len(panels))
    check(all(p.get("targets") and p.get("gridPos") for p in panels),
          "every panel has a query and a place")
    check(len({p.get("id") for p in panels}) == len(panels), "panel ids are unique")
    kinds = {p.get("type") for p in panels}
    check("heatmap" in kinds, "the detection-time histogram is a heatmap")

    metrics = exported(scrape(sys.argv[1]))
    check("kaproxy_connections_active" in metrics, "kaproxy's /metrics was scraped")
    named = set()
    for where, expr in queries(dash):
        check(expr.strip() != "", "%s has a query" % where)
        here = set()
        for m in re.finditer(r"\b(kaproxy_[a-z0-9_]+)(\{([^}]*)\})?", expr):
            name = m.group(1)
            named.add(name)
            here.add(name)
            check(name in metrics, "%s: %s is in /metrics" % (where, name))
            for label in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*[=!]~?", m.group(3) or ""):
                check(label in metrics.get(name, ()),
                      "%s: %s has the label %s" % (where, name, label))
        for by in re.findall(r"\bby\s*\(([^)]*)\)", expr):
            for label in (x.strip() for x in by.split(",")):
                check(any(label in metrics.get(n, ()) for n in here),
                      "%s: grouped by %s, a label of what it queries" % (where, label))
    for want in ("kaproxy_connections_active", "kaproxy_connections_closed_total",
                 "kaproxy_dead_peer_detection_seconds_bucket", "kaproxy_bytes_total",
                 "kaproxy_connections_refused_total", "kaproxy_config_reloads_total"):
        check(want in named, "the dashboard shows %s" % want)
    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
