#!/usr/bin/env python3
"""The admin page shows a dying connection in a real browser: Debian's chromium (driven by playwright-core, tests/browser/) opens http://127.0.0.1:9901/ in the proxy namespace, sees the live connection's row, then, once the upstream is silenced (iptables DROP), sees that row's upstream leg marked dying with its keepalive probes counting up and a countdown to the kernel's verdict, and finally sees the connection among the closed ones with upstream_timeout, the teardown and the detection time; the page raises no console error, page error or failed request.  Screenshots of the dying and the closed state are taken (into $KAPROXY_PAGE_SHOTS, docs/ for the README, else the lab directory).

A missing chromium or playwright-core (`npm ci` in tests/browser) is a failure, not a skip.
"""
import os
import re
import time

import lab

UPSTREAM = (2, 1, 4)   # idle 2 s, probes at 2, 3, 4, 5 s, dead at 6 s
CLIENT = (30, 5, 3)


def countdown_s(leg):
    """The seconds a leg's countdown shows ('declared dead in 3.9 s'), or -1."""
    m = re.match(r"declared_dead_in_([0-9.]+)_(ms|s)$", leg["countdown"])
    return float(m.group(1)) / (1000 if m.group(2) == "ms" else 1) if m else -1


def main(t):
    shots = os.environ.get("KAPROXY_PAGE_SHOTS") or t.dir
    os.makedirs(shots, exist_ok=True)

    srv = t.server()
    t.start_kaproxy({"t": lab.listener(upstream_policy=UPSTREAM, client=CLIENT)},
                    {"admin_listen": lab.ADMIN_LISTEN})
    admin = lab.Admin(t)
    cli = t.pair(srv)
    t.exchange(cli, srv)
    conns = admin.json("/connections")
    t.check(len(conns) == 1, "one live connection (%s)" % conns)
    cid = conns[0]["id"]

    browser = t.browser()
    browser.ok("open http://%s/ 30" % lab.ADMIN_LISTEN, timeout=40)
    browser.ok("row %d 5" % cid, timeout=10)
    r = browser.ok("leg %d upstream ok 0 5" % cid, timeout=10)
    t.check(r["probes"] == "0", "a healthy upstream leg shows no probes (%s)" % r)

    dropped = t.drop_all("server")
    bound = lab.worst_case_s(UPSTREAM) + lab.SLACK
    first = browser.ok("leg %d upstream dying 1 %.1f" % (cid, bound), timeout=bound + 5)
    lab.log("dying at %.2fs after the DROP: %s" % (time.time() - dropped, first))
    left_s = countdown_s(first)
    t.check(0 < left_s <= lab.worst_case_s(UPSTREAM),
            "the dying leg shows a countdown to its verdict, within the policy's %d s (%s)"
            % (lab.worst_case_s(UPSTREAM), first["countdown"]))
    t.check("dying" in first["row"], "the whole row stands out as dying (%s)" % first)
    later = browser.ok("leg %d upstream dying %d %.1f" % (cid, int(first["probes"]) + 1, bound),
                       timeout=bound + 5)
    t.check(int(later["probes"]) > int(first["probes"]),
            "the probes count up in the page (%s then %s)" % (first["probes"], later["probes"]))
    t.check(0 <= countdown_s(later) < left_s,
            "and the countdown counts down (%s then %s)" % (first["countdown"], later["countdown"]))
    browser.ok("shot %s" % os.path.join(shots, "page-dying.png"))

    browser.ok("gone %d %.1f" % (cid, bound), timeout=bound + 5)
    closed = browser.ok("closed %d 5" % cid, timeout=10)
    t.check(closed["reason"] == "upstream_timeout" and closed["teardown"] == "rst",
            "the closed table says upstream_timeout, rst (%s)" % closed)
    t.check(closed["detect"] != "-", "and the detection time (%s)" % closed)
    browser.ok("shot %s" % os.path.join(shots, "page-closed.png"))
    t.check_closed(t.access_log.of("t"), "upstream_timeout", "rst")

    # /closed, which the page reads, agrees with the access log.
    rec = admin.json("/closed")
    t.check(len(rec) == 1 and rec[0]["id"] == cid and rec[0]["close_reason"] == "upstream_timeout"
            and rec[0]["detect_ms"] >= UPSTREAM[0] * 1000,
            "/closed holds the one close with its detection time (%s)" % rec)

    errors = browser.cmd("errors")
    t.check(errors.status == "OK", "no console errors, page errors or failed requests: %s" % errors)
    browser.ok("quit")
    t.check(browser.popen.wait(timeout=15) == 0, "the browser closes and its driver exits 0")


if __name__ == "__main__":
    lab.run(main, __doc__)
