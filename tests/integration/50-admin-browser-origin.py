#!/usr/bin/env python3
"""A page on another origin, in a real browser, can neither read /connections nor close a connection through the admin endpoint, cross-site or after DNS rebinding, while the endpoint's own page in the same browser can do both.

Debian's chromium (playwright-core, tests/browser/page-check.js) runs in the
proxy namespace with one victim connection and one control connection live.
The hostile page is tests/browser/attack.html, served by python's http.server
from attacker origins in the same namespace; its script tries GET
/connections, a no-cors fetch POST /connections/ID/close and an auto-submitted
form POST to the same URL (see the page).

Cross-site, from http://127.0.0.1:9902 (the endpoint's host, another port)
and from http://127.0.0.2:9901 (another host, the endpoint's port): the
browser sends the GET with the page's Origin and kaproxy refuses it with 403
(Origin check), so the list never reaches the browser, and the answer has no
Access-Control-Allow-Origin either (what the browser itself received comes
from the page's DevTools session); the browser sends both
POSTs, with the endpoint's own Host and the page's Origin, and kaproxy
refuses each with 403 (Origin check): the fetch's 403 as the browser received
it, the form's by the count below (its answer lands in a frame of another
site, out of that session's sight, and the page may not read it either).

DNS rebinding: chromium resolves evil.test to 127.0.0.2 (--host-resolver-rules),
where the attacker's server on the endpoint's port 9901 serves the page as
http://evil.test:9901/attack.html.  Then the name is rebound to the
endpoint: the attacker's server goes away and a DNAT rule sends every new
connection for 127.0.0.2:9901 to 127.0.0.1:9901.  Chromium's resolver rules
are fixed at launch, so the rule stands in for the new DNS answer, and it
does so exactly: to the browser the page and its requests are still one
origin, http://evil.test:9901, the name still resolves to the same address,
and the bytes reach kaproxy with Host: evil.test:9901.  The page, which asks
for /connections every 100 ms as a rebinding page does, now reaches kaproxy
same-origin (nothing in the browser stops it from reading the answer): its
GET, its POST and its form are refused 403 (Host check), as are navigations
to http://evil.test:9901/ and /connections.

Every refusal is counted in kaproxy_admin_requests_refused_total{code="403"}
(exactly one per request that reached kaproxy), and the victim connection
still forwards bytes afterwards.  Control: the same browser on the admin page,
http://127.0.0.1:9901/, reads /connections and closes the control connection
with a POST from its own origin (close_reason admin), and no 403 is counted.

A missing chromium or playwright-core (`npm ci` in tests/browser) is a failure, not a skip.
"""
import json
import os
import shutil
import sys
import urllib.parse

import lab

ADMIN_PORT = lab.ADMIN_LISTEN.rsplit(":", 1)[1]
CROSS_SITE = ("127.0.0.1:9902", "127.0.0.2:%s" % ADMIN_PORT)
EVIL = "evil.test"
EVIL_ADDR = CROSS_SITE[1]               # where evil.test pointed before the rebinding
REFUSED_403 = 'kaproxy_admin_requests_refused_total{code="403"}'


def decoded(text):
    return urllib.parse.unquote(text)


def refused_403(admin):
    return admin.metrics()[REFUSED_403]


def attack(t, browser, url):
    """Load attack.html at url and wait for its outcome ({read, post, form})."""
    r = browser.ok("goto %s 20" % url, timeout=30)
    t.check(r["status"] == "200", "the attacker's server serves %s (%s)" % (url, r["status"]))
    return json.loads(decoded(browser.ok("result 30", timeout=40)["json"]))


def check_alive(t, admin, srv, victim, vid, after):
    """The victim connection is listed, not logged closed, and forwards both ways."""
    t.check(not t.access_log.closed("t", client=victim.addr),
            "after %s: no access-log record for the victim" % after)
    t.check(vid in {c["id"] for c in admin.json("/connections")},
            "after %s: the victim is still in /connections" % after)
    srv.ok("use %d" % victim.server_conn)
    t.exchange(victim, srv)
    lab.log("after %s: the victim still forwards 1000 bytes each way" % after)


def cross_site(t, browser, admin, vid, origin):
    """The attack from origin, an address:port other than the endpoint's."""
    before = refused_403(admin)
    url = "http://%s/attack.html?admin=http://%s&id=%d" % (origin, lab.ADMIN_LISTEN, vid)
    out = attack(t, browser, url)
    got = browser.ok("fetched /connections 1 10", timeout=15)
    t.check(got["statuses"] == "403" and got["acao"] == "-" and
            got["cors"] == "MissingAllowOriginHeader",
            "from %s: kaproxy refused the browser's GET /connections with 403 (foreign "
            "Origin), without Access-Control-Allow-Origin (%s)" % (origin, got))
    t.check("error" in out["read"] and "body" not in out["read"],
            "from %s: the page cannot read /connections (%s)" % (origin, out["read"]))
    got = browser.ok("fetched /connections/%d/close 1 10" % vid, timeout=15)
    t.check(got["statuses"] == "403",
            "from %s: kaproxy refused the no-cors fetch POST with 403 (got %s)"
            % (origin, got["statuses"]))
    t.check(out["post"].get("type") == "opaque" and out["form"].get("unreadable"),
            "from %s: the browser hid the answers to the fetch POST and the form from the page "
            "(%s %s)" % (origin, out["post"], out["form"]))
    after = refused_403(admin)
    t.check(after - before == 3, "from %s: three more 403s counted, the GET, the fetch "
            "POST and the form's (%d -> %d)" % (origin, before, after))


def rebinding(t, browser, admin, attacker, vid, victim_addr):
    """The attack from a page whose name is rebound to the endpoint's address."""
    before = refused_403(admin)
    r = browser.ok("goto http://%s:%s/attack.html?id=%d&wait=1 20" % (EVIL, ADMIN_PORT, vid),
                   timeout=30)
    t.check(r["status"] == "200", "%s:%s first resolves to the attacker's server (%s)"
            % (EVIL, ADMIN_PORT, r["status"]))
    # The new DNS answer: new connections for the old address reach the endpoint.  A
    # connection the browser still holds to the attacker's server would not, so that
    # server goes away, as a rebinding attacker's server stops answering.
    host, port = EVIL_ADDR.split(":")
    t.run("proxy", ["iptables", "-w", "5", "-t", "nat", "-I", "OUTPUT", "-p", "tcp", "-d", host,
                    "--dport", port, "-j", "DNAT", "--to-destination", lab.ADMIN_LISTEN])
    attacker.stop()
    lab.log("%s rebound: %s now reaches %s" % (EVIL, EVIL_ADDR, lab.ADMIN_LISTEN))

    out = json.loads(decoded(browser.ok("result 30", timeout=40)["json"]))
    read = out["read"]
    t.check(read.get("status") == 403,
            "the rebound page's same-origin GET /connections reached kaproxy and got 403 "
            "(got %s, the page read %r)" % (read.get("status") or read, read.get("body", "")[:160]))
    t.check(victim_addr not in read["body"] and "[" not in read["body"],
            "the rebound page read no connection from the body (%r)" % read["body"])
    t.check(out["post"].get("status") == 403,
            "the rebound page's same-origin POST close got 403 (%s)" % out["post"])
    t.check("Host is not" in out["form"].get("text", ""),
            "the rebound page's form POST got kaproxy's Host refusal (%s)" % out["form"])
    for path in ("/", "/connections"):
        r = browser.ok("goto http://%s:%s%s 20" % (EVIL, ADMIN_PORT, path), timeout=30)
        body = decoded(r["body"])
        t.check(r["status"] == "403" and victim_addr not in body and "<html" not in body.lower(),
                "navigating to http://%s:%s%s: 403 and nothing of the endpoint's (%s %r)"
                % (EVIL, ADMIN_PORT, path, r["status"], body[:200]))
    after = refused_403(admin)
    t.check(after - before == 5, "rebound: five more 403s counted, GET, POST, form and two "
            "navigations (%d -> %d)" % (before, after))


def control(t, browser, admin, srv, cli, cid, vid):
    """The endpoint's own page in the same browser reads /connections and closes cid."""
    before = refused_403(admin)
    browser.ok("open http://%s/ 30" % lab.ADMIN_LISTEN, timeout=40)
    r = browser.ok("fetch GET /connections 10", timeout=15)
    listed = json.loads(decoded(r["body"])) if r["status"] == "200" else []
    t.check({c["id"] for c in listed} == {vid, cid} and
            {c["client"] for c in listed} >= {cli.addr},
            "the admin page reads both connections from /connections (%s %s)"
            % (r["status"], decoded(r["body"])[:300]))
    cli.submit("wait_close 5")
    srv.ok("use %d" % cli.server_conn)
    srv.submit("wait_close 5")
    r = browser.ok("fetch POST /connections/%d/close 10" % cid, timeout=15)
    t.check(r["status"] == "200" and '"how":"rst"' in decoded(r["body"]),
            "the admin page's own-origin POST closes the control connection (%s %s)"
            % (r["status"], decoded(r["body"]).strip()))
    t.check(cli.reply(10).status == "RESET", "the control's client is reset")
    t.check(srv.reply(10).status == "RESET", "the control's server is reset")
    t.check_closed(t.access_log.of("t", 5, client=cli.addr), "admin", "rst")
    after = refused_403(admin)
    t.check(after == before, "the admin page's own requests: no 403 (%d -> %d)"
            % (before, after))


def main(t):
    srv = t.server()
    t.start_kaproxy({"t": lab.listener()}, {"admin_listen": lab.ADMIN_LISTEN})
    admin = lab.Admin(t)
    peers = []
    for name in ("victim", "control"):
        cli = t.pair(srv, name=name)
        srv.ok("use %d" % cli.server_conn)
        t.exchange(cli, srv)
        cli.addr = cli.ok("info")["local"]
        peers.append(cli)
    victim, ctl = peers
    ids = {c["client"]: c["id"] for c in admin.json("/connections")}
    t.check(len(ids) == 2, "two live connections (%s)" % ids)
    vid, cid = ids[victim.addr], ids[ctl.addr]

    site = os.path.join(t.dir, "attacker")
    os.makedirs(site)
    shutil.copy(os.path.join(lab.BROWSER_DIR, "attack.html"), site)
    servers = {}
    for origin in CROSS_SITE:
        host, port = origin.split(":")
        servers[origin] = t.spawn("proxy", [sys.executable, "-m", "http.server", "--bind", host,
                                            "--directory", site, port], "attacker-" + origin)
        t.wait_listening(servers[origin], {origin})

    browser = t.browser()
    browser.ok("launch 30 MAP %s %s" % (EVIL, EVIL_ADDR.split(":")[0]), timeout=40)

    for origin in CROSS_SITE:
        cross_site(t, browser, admin, vid, origin)
    check_alive(t, admin, srv, victim, vid, "the cross-site attacks")
    rebinding(t, browser, admin, servers[EVIL_ADDR], vid, victim.addr)
    check_alive(t, admin, srv, victim, vid, "the rebinding attack")
    control(t, browser, admin, srv, ctl, cid, vid)
    check_alive(t, admin, srv, victim, vid, "the control")

    browser.ok("quit")
    t.check(browser.popen.wait(timeout=15) == 0, "the browser closes and its driver exits 0")


if __name__ == "__main__":
    lab.run(main, __doc__)
