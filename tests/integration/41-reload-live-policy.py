#!/usr/bin/env python3
"""A reload that shortens a listener's keepalive reaches its live connections at once, on both legs (probes on the wire about 2 s later, the new policy read back from the sockets in /connections), without closing them; with reload_live_connections = keep the live ones keep the old policy and send no probe.

Two listeners, both idle 60s/10s/6 at start; a connection on each exchanges
data, then the file is changed to 2s/1s/2 on both and kaproxy reloaded.
"""
import time

import lab
import situations as sit

OLD, NEW = (60, 10, 6), (2, 1, 2)


def listeners(policy):
    return {
        "live": lab.listener(client=policy, upstream_policy=policy),
        "kept": lab.listener(listen="%s:7010" % lab.PROXY_CLIENT_IP, client=policy,
                             upstream_policy=policy, reload_live_connections="keep"),
    }


def policy_of(view, leg):
    p = view["%s_policy" % leg]
    return (p["idle_s"], p["interval_s"], p["count"])


def main(t):
    srv = t.server(backlog=32)
    g = {"admin_listen": lab.ADMIN_LISTEN}
    px = t.start_kaproxy(listeners(OLD), g)
    admin = lab.Admin(t)
    cap = sit.start_capture(t)
    live = sit.Conn(t, srv, "live", 7000, "client-live")
    kept = sit.Conn(t, srv, "kept", 7010, "client-kept")
    for c in (live, kept):
        c.exchange()
    views = {v["listener"]: v for v in admin.json("/connections")}
    for name in ("live", "kept"):
        for leg in sit.LEGS:
            t.check(policy_of(views[name], leg) == OLD, "%s/%s: runs %s before the reload (read "
                    "back: %s)" % (name, leg, OLD, views[name]["%s_policy" % leg]))

    px.reload(t.kaproxy_ini(listeners(NEW), g))
    px.wait_log("reloaded")
    reloaded = time.time()
    px.wait_log("listener live: new keepalive policy set on 1 live connection(s)")
    t.check("listener kept: new keepalive policy" not in px.stderr_text(100000),
            "kept: the reload did not touch its live connection")
    views = {v["listener"]: v for v in admin.json("/connections")}
    for leg in sit.LEGS:
        t.check(policy_of(views["live"], leg) == NEW, "live/%s: now runs %s, read back from the "
                "socket (%s)" % (leg, NEW, views["live"]["%s_policy" % leg]))
        t.check(policy_of(views["kept"], leg) == OLD, "kept/%s: still runs %s (%s)"
                % (leg, OLD, views["kept"]["%s_policy" % leg]))
        t.check(views["live"]["%s_policy" % leg]["user_timeout_ms"] == 4000,
                "live/%s: the auto user timeout followed (4000 ms)" % leg)

    # Watch the wire for two new-idle periods: every leg of "live" probes,
    # each probe answered (the peers are alive), nothing on "kept".
    watch = lab.worst_case_s(NEW) + lab.timer_slack(NEW[0])
    lab.log("watching the wire for %.1f s" % watch)
    time.sleep(watch)   # the time under test: probes must appear within it
    pkts = cap.packets()
    for c, name in ((live, "live"), (kept, "kept")):
        streams = c.streams(pkts)
        for leg in sit.LEGS:
            probes = [p for p in streams[leg].probes() if p["t"] > reloaded]
            if name == "live":
                t.check(probes, "live/%s: keepalive probes after the reload (%d)"
                        % (leg, len(probes)))
                first = probes[0]["t"] - reloaded
                t.check_within("live/%s: reload -> first probe" % leg, first, NEW[0],
                               slack_s=lab.timer_slack(NEW[0]), leg=leg)
                t.check(all(streams[leg].answer_to(p) for p in probes),
                        "live/%s: every probe answered" % leg)
            else:
                t.check(not probes, "kept/%s: no probe (%d): its 60 s policy stands"
                        % (leg, len(probes)))
    for c in (live, kept):
        t.check(c.still_open(), "%s: not closed by the reload" % c.listener)
        c.exchange()


if __name__ == "__main__":
    lab.run(main, __doc__)
