#!/usr/bin/env python3
"""When an upstream connection dies by timeout or a connect to it fails, kaproxy re-probes every other idle connection to that address at once, on every worker (upstream_recheck_on_death): to a powered-off server all close as upstream_timeout within a few seconds of the first, not each at its own keepalive time; with one connection's path broken the others answer, none is killed and each gets its own policy back; new clients avoid the suspect upstream until a connect to it succeeds again.

kaproxy runs two workers, so the connections of each part are spread over
both and the re-probe has to reach the other worker's.  Four listeners, one
crowd server per upstream port in the server namespace:

- path (upstream 3s/1s/2): ten idle connections; iptables drops one of
  them (its port only).  It dies as upstream_timeout; the other nine are
  re-probed (recheck counter alive = 9, dead = 0), all stay open and carry
  bytes, and /connections reads each one's own 3s/1s/2, 5000 ms back from
  its upstream socket.  The listener has no other upstream, so new clients
  still go there: the next one's connect clears the address (the suspect
  gauge back to 0) and no trial connect is made.
- two (upstreams A and B, roundrobin, 3s/1s/2): idle connections on both;
  A's port is dropped, its connections die, A is suspect; six new clients
  all go to B at once (none waits for A's connect_timeout); A answers
  again, kaproxy's trial connect clears it (the gauge falls to 0) and new
  clients reach A again.
- on / off (upstream 10s/1s/2, recheck on / off): 20 connections each,
  started 0.4 s apart so that each one's keepalive runs on its own phase,
  then the server is powered off (DROP in and out of its namespace).  With
  the key on, all 20 close within 3 s (the recheck's user timeout) of the
  first; with it off they spread over the 7.6 s of the start-up stagger.
  Both spreads are printed as MEASURE lines.
"""
import time

import lab

LONG, SHORT = (10, 1, 2), (3, 1, 2)
STAGGER_S, N_POWERED_OFF = 0.4, 20
RECHECK_UT_S = 3.0          # the user timeout kaproxy sets on a re-probed leg
SRV = lab.SERVER_IP
PORTS = {"on": 7001, "off": 7002, "path": 7003, "two_a": 7004, "two_b": 7005}


def listeners():
    px = lab.PROXY_CLIENT_IP
    return {
        "on": lab.listener(listen="%s:7000" % px, upstream="%s:7001" % SRV,
                           upstream_policy=LONG),
        "off": lab.listener(listen="%s:7010" % px, upstream="%s:7002" % SRV,
                            upstream_policy=LONG, upstream_recheck_on_death="off"),
        "path": lab.listener(listen="%s:7020" % px, upstream="%s:7003" % SRV,
                             upstream_policy=SHORT),
        "two": lab.listener(listen="%s:7030" % px, upstream="%s:7004, %s:7005" % (SRV, SRV),
                            upstream_policy=SHORT, balance="roundrobin"),
    }


def port_drop(t, args, add):
    """iptables DROP in the server namespace for the packets args selects,
    in (-p tcp --dport/--sport ...) and out (the same, mirrored)."""
    mirrored = [{"--dport": "--sport", "--sport": "--dport"}.get(a, a) for a in args]
    op = "-I" if add else "-D"
    for chain, match in (("INPUT", args), ("OUTPUT", mirrored)):
        t.run("server", ["iptables", "-w", "5", op, chain] + (["1"] if add else [])
              + ["-p", "tcp"] + match + ["-j", "DROP"], check=add)


def rechecks(admin, listener):
    m = admin.metrics()
    return {r: m.get('kaproxy_upstream_rechecks_total{listener="%s",result="%s"}'
                     % (listener, r)) for r in ("alive", "dead")}


def suspect_gauge(admin):
    return admin.metrics().get("kaproxy_upstreams_suspect")


def wait_gauge(admin, value, timeout, what):
    lab.wait_until(lambda: suspect_gauge(admin) == value, timeout,
                   "kaproxy_upstreams_suspect %s (%s)" % (value, what), interval=0.2)
    lab.log("ok: kaproxy_upstreams_suspect is %s: %s" % (value, what))


def upstream_policy(view):
    p = view["upstream_policy"]
    return (p["keepalive"], p["idle_s"], p["interval_s"], p["count"], p["user_timeout_ms"])


def part_path_broken(t, px, admin, srv):
    cl = t.crowd("client", "client-path")
    cl.ok("connect 10 %s:7020" % lab.PROXY_CLIENT_IP)
    srv.wait("accepted", 10)
    legs = lab.wait_until(
        lambda: (lambda l: l if len(l) == 10 else None)(
            [s for s in t.proxy_sockets() if s["remote"] == "%s:7003" % SRV
             and s["state"] == "ESTABLISHED"]),
        5, "kaproxy's ten upstream legs to :7003")
    victim = int(legs[0]["local"].rpartition(":")[2])
    port_drop(t, ["--dport", "7003", "--sport", str(victim)], add=True)
    broken = time.time()
    lab.log("path to :7003 broken for kaproxy's port %d only" % victim)
    rec = t.access_log.wait(lambda r: r["listener"] == "path", lab.worst_case_s(SHORT)
                            + 2 * lab.SLACK, "the broken connection's line")
    t.check_closed(rec, "upstream_timeout", "rst")
    t.check_within("path: one path broken -> upstream_timeout", rec["_seen"] - broken,
                   lab.worst_case_s(SHORT), leg="upstream", situation="recheck: one path broken")
    px.wait_log("upstream %s:7003: suspect" % SRV)
    # Each of the nine answers its probe within about a second of its recheck.
    lab.wait_until(lambda: rechecks(admin, "path")["alive"] == 9, 2 + 2 * lab.SLACK,
                   "nine rechecks answered", interval=0.2)
    t.check(rechecks(admin, "path") == {"alive": 9, "dead": 0},
            "path: nine rechecks, all alive, none dead (%s)" % rechecks(admin, "path"))
    views = admin.json("/connections?listener=path")
    t.check(len(views) == 9, "path: the other nine are open (%d)" % len(views))
    want = (True, SHORT[0], SHORT[1], SHORT[2], lab.worst_case_s(SHORT) * 1000)
    for v in views:
        t.check(upstream_policy(v) == want, "path: connection %s runs its own policy again, "
                "read back from the socket: %s" % (v["id"], v["upstream_policy"]))
    t.check(len(t.access_log.closed("path")) == 1, "path: only the broken one was closed")
    # Alive means alive: bytes still cross every one of them.
    srv.ok("send 1000")
    st = lab.wait_until(lambda: (lambda r: r if r["received"] == "9000" else None)(
        cl.ok("stats")), 5, "1000 bytes on each of the nine")
    t.check(st["open"] == "9" and st["mismatch"] == "0",
            "path: nine clients still open, 1000 bytes each, every byte right (%s)" % st)
    # One upstream: its clients go there anyway, and the first that connects
    # clears it (no trial connects for an address no listener avoids).
    t.check(suspect_gauge(admin) == 1, "path: :7003 still suspect until a client connects")
    t.check("trial connect" not in px.stderr_text(10 ** 7), "path: no trial connect")
    cl.ok("connect 1 %s:7020" % lab.PROXY_CLIENT_IP)
    srv.wait("accepted", 11)
    wait_gauge(admin, 0, 2, "a client's connect to :7003 succeeded")
    px.wait_log("upstream %s:7003: a connect succeeded: no longer suspect" % SRV)
    port_drop(t, ["--dport", "7003", "--sport", str(victim)], add=False)
    cl.ok("close")
    lab.wait_until(lambda: len(t.access_log.closed("path")) == 11, 5, "path: all closed")


def on_upstream(views, port):
    return [v for v in views if v["upstream"] == "%s:%d" % (SRV, port)]


def part_two_upstreams(t, px, admin, srv_a, srv_b):
    cl = t.crowd("client", "client-two")
    cl.ok("connect 6 %s:7030" % lab.PROXY_CLIENT_IP)
    views = lab.wait_until(
        lambda: (lambda v: v if len(v) == 6 and all(x["state"] == "running" for x in v)
                 else None)(admin.json("/connections?listener=two")),
        5, "six connections running on listener two")
    on_a = len(on_upstream(views, 7004))
    # Each worker's round robin starts at A: every worker that got one sent one there.
    t.check(on_a >= 1, "two: %d of 6 idle connections on A (:7004)" % on_a)
    port_drop(t, ["--dport", "7004"], add=True)
    lab.log("upstream A (:7004) silent")
    lab.wait_until(lambda: len(t.access_log.closed("two")) == on_a,
                   lab.worst_case_s(SHORT) + 2 * lab.SLACK, "A's connections closed")
    for rec in t.access_log.closed("two"):
        t.check_closed(rec, "upstream_timeout", "rst", upstream="%s:7004" % SRV)
    wait_gauge(admin, 1, 2, "A is suspect")
    timeouts_before = px.stderr_text(10 ** 7).count("upstream %s:7004: Connection timed out"
                                                     % SRV)
    accepted_b = int(srv_b.ok("stats")["accepted"])
    cl.ok("connect 6 %s:7030" % lab.PROXY_CLIENT_IP)
    # Through B at once: a client sent to A would wait connect_timeout (2 s) first.
    srv_b.wait("accepted", accepted_b + 6, 1.5)
    views = admin.json("/connections?listener=two")
    t.check(not on_upstream(views, 7004) and len(views) == 12 - on_a,
            "two: while A is suspect every new client went to B (%d open, %d on A)"
            % (len(views), len(on_upstream(views, 7004))))
    t.check(px.stderr_text(10 ** 7).count("upstream %s:7004: Connection timed out" % SRV)
            == timeouts_before, "two: no new client tried A first")
    port_drop(t, ["--dport", "7004"], add=False)
    lab.log("upstream A (:7004) answers again")
    wait_gauge(admin, 0, 2 + 1 + 2 * lab.SLACK, "a trial connect to A succeeded")
    px.wait_log("upstream %s:7004: a trial connect succeeded" % SRV)
    cl.ok("connect 4 %s:7030" % lab.PROXY_CLIENT_IP)
    views = lab.wait_until(
        lambda: (lambda v: v if len(v) == 16 - on_a and all(x["state"] == "running" for x in v)
                 else None)(admin.json("/connections?listener=two")),
        5, "the four new connections running")
    t.check(len(on_upstream(views, 7004)) >= 1, "two: once A is back new clients reach it "
            "again (%d on A)" % len(on_upstream(views, 7004)))
    cl.ok("close")
    lab.wait_until(lambda: len(t.access_log.closed("two")) == 16, 5, "two: all closed")


def part_powered_off(t, px, admin, srv_on, srv_off):
    cl_on, cl_off = t.crowd("client", "client-on"), t.crowd("client", "client-off")
    cl_on.quiet = cl_off.quiet = True
    started = []
    for i in range(N_POWERED_OFF):
        cl_on.ok("connect 1 %s:7000" % lab.PROXY_CLIENT_IP)
        cl_off.ok("connect 1 %s:7010" % lab.PROXY_CLIENT_IP)
        started.append(time.time())
        time.sleep(STAGGER_S)   # the stagger under test, not a wait for anything
    srv_on.wait("accepted", N_POWERED_OFF)
    srv_off.wait("accepted", N_POWERED_OFF)
    workers = {v["worker"] for v in admin.json("/connections?listener=on")}
    t.check(workers == {0, 1}, "on: connections on both workers (%s)" % sorted(workers))
    dropped = t.drop_all("server")
    lab.wait_until(lambda: len(t.access_log.closed("on")) == N_POWERED_OFF
                   and len(t.access_log.closed("off")) == N_POWERED_OFF,
                   lab.worst_case_s(LONG) + 2 * lab.SLACK, "every connection closed")
    spreads = {}
    for name in ("on", "off"):
        recs = t.access_log.closed(name)
        for rec in recs:
            t.check_closed(rec, "upstream_timeout", "rst")
        ts = sorted(lab.parse_ts(r["ts"]) for r in recs)
        spreads[name] = ts[-1] - ts[0]
        lab.log("%s: first upstream_timeout %.2f s after the power-off, last %.2f s"
                % (name, ts[0] - dropped, ts[-1] - dropped))
    t.check_within("recheck on: %d connections to a powered-off server, first -> last "
                   "upstream_timeout" % N_POWERED_OFF, spreads["on"], RECHECK_UT_S,
                   leg="upstream", situation="recheck on: detection spread")
    # Without the recheck each dies at its own last segment + 12 s: the
    # deaths spread as the starts did (longer than 7.6 s on a slow machine).
    stagger = started[-1] - started[0]
    lab.log("the %d starts took %.2f s" % (N_POWERED_OFF, stagger))
    t.check_within("recheck off: %d connections to a powered-off server, first -> last "
                   "upstream_timeout" % N_POWERED_OFF, spreads["off"], stagger,
                   lower_s=stagger - 2 * lab.SLACK, leg="upstream",
                   situation="recheck off: detection spread")
    t.check(rechecks(admin, "on") == {"alive": 0, "dead": N_POWERED_OFF - 1},
            "on: the first died by its own timer, the other %d by their recheck (%s)"
            % (N_POWERED_OFF - 1, rechecks(admin, "on")))
    t.check(rechecks(admin, "off") == {"alive": 0, "dead": 0},
            "off: nothing re-probed (%s)" % rechecks(admin, "off"))
    t.check(suspect_gauge(admin) == 1, "one upstream suspect (:7001; :7002's listener has the "
            "key off): %s" % suspect_gauge(admin))


def main(t):
    servers = {name: t.crowd("server", "server-%d" % port, listen="%s:%d" % (SRV, port))
               for name, port in PORTS.items()}
    px = t.start_kaproxy(listeners(), {"admin_listen": lab.ADMIN_LISTEN, "workers": "2"})
    admin = lab.Admin(t)
    t.check(suspect_gauge(admin) == 0, "nothing suspect at start")
    part_path_broken(t, px, admin, servers["path"])
    part_two_upstreams(t, px, admin, servers["two_a"], servers["two_b"])
    part_powered_off(t, px, admin, servers["on"], servers["off"])


if __name__ == "__main__":
    lab.run(main, __doc__)
