#!/usr/bin/env python3
"""SIGHUP reloads without disturbing live connections (new ones follow the new config, an invalid file is refused and the running config kept), SIGUSR1 reopens a rotated access log, and SIGTERM drains: new connections are refused, a live one is closed with close_reason shutdown at shutdown_timeout, and kaproxy exits 0.

Server A listens on :7001, server B on :7002.  A connection made before the
reload keeps talking to A; after pointing the listener at B and sending
SIGHUP, a new connection reaches B.  A broken file then changes nothing.
"""
import os
import signal

import lab

SERVER_B = "%s:7002" % lab.SERVER_IP
GLOBAL = {"shutdown_timeout": "2s"}


def main(t):
    srv_a = t.server()
    srv_b = t.server(listen=SERVER_B, name="server-b")
    listeners = {"t": lab.listener()}
    px = t.start_kaproxy(listeners, GLOBAL)
    old = t.pair(srv_a)
    t.exchange(old, srv_a)

    # Valid reload: the listener now points at B.
    listeners["t"]["upstream"] = SERVER_B
    px.reload(t.kaproxy_ini(listeners, GLOBAL))
    px.wait_log("reloaded")
    new = t.pair(srv_b, name="client-new")
    t.exchange(new, srv_b)
    t.check(True, "a connection made after the reload reaches server B")
    srv_a.ok("use %d" % old.server_conn)
    t.exchange(old, srv_a, 500)
    t.check(True, "the connection made before the reload still talks to server A")

    # Invalid reload: refused, running config kept.
    px.reload("[global]\nno_such_key = 1\n")
    px.wait_log("reload failed")
    t.check(px.alive(), "kaproxy survives an invalid reload")
    again = t.pair(srv_b, name="client-again")
    t.exchange(again, srv_b)
    t.check(True, "after a refused reload new connections still reach server B")
    for c in (again, new):
        t.close_pair(c, srv_b)
    t.check_closed(t.access_log.of("t", 5), "client_fin", "none", upstream=SERVER_B)

    # Rotation: rename the log, SIGUSR1, the next line lands in a new file.
    rotated = t.access_log.path + ".1"
    os.rename(t.access_log.path, rotated)
    px.signal(signal.SIGUSR1)
    lab.wait_until(lambda: os.path.exists(t.access_log.path), 5, "the access log to be reopened")
    before = os.path.getsize(rotated)
    t.access_log = lab.AccessLog(t.access_log.path)
    rot = t.pair(srv_b, name="client-rotate")
    t.close_pair(rot, srv_b)
    t.check_closed(t.access_log.of("t", 5), "client_fin", "none")
    t.check(os.path.getsize(rotated) == before, "nothing more is written to the rotated file")

    # Drain: stop accepting, close what is left at shutdown_timeout (2 s).
    old.submit("wait_close 10")
    px.drain()
    r = t.client("client-late").cmd("connect %s:7000 3" % lab.PROXY_CLIENT_IP)
    t.check(r.status == "ERR", "a connection attempt while draining is refused (%s)" % r)
    rec = t.access_log.wait(lambda r: r["close_reason"] == "shutdown", 10, "the shutdown line")
    t.check_closed(rec, "shutdown", "rst", upstream="%s:7001" % lab.SERVER_IP,
                   bytes_from_client=1500, bytes_to_client=1500)
    t.check(1.0 <= rec["duration_ms"] / 1000.0, "the live connection was kept through the drain")
    r = old.reply(10)
    t.check(r.status in ("RESET", "EOF"), "the live client sees its connection end (%s)" % r)
    t.wait_kaproxy_exit()


if __name__ == "__main__":
    lab.run(main, __doc__)
