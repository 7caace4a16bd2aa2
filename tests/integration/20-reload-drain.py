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


def wait_stderr(t, px, needle, count, timeout=5):
    lab.wait_until(lambda: px.stderr_text(100000).count(needle) >= count, timeout,
                   "kaproxy to log %r (%d)" % (needle, count))


def main(t):
    srv_a = t.server()
    srv_b = t.server(listen=SERVER_B, name="server-b")
    listeners = {"t": lab.listener()}
    px = t.start_kaproxy(listeners, {"shutdown_timeout": "2s"})
    old = t.pair(srv_a)
    t.exchange(old, srv_a)

    # Valid reload: the listener now points at B.
    listeners["t"]["upstream"] = SERVER_B
    with open(px.ini_path, "w") as f:
        f.write(t.kaproxy_ini(listeners, {"shutdown_timeout": "2s"}))
    os.kill(px.pid, signal.SIGHUP)
    wait_stderr(t, px, "reloaded", 1)
    new = t.pair(srv_b, name="client-new")
    t.exchange(new, srv_b)
    t.check(True, "a connection made after the reload reaches server B")
    srv_a.ok("use %d" % old.server_conn)
    t.exchange(old, srv_a, 500)
    t.check(True, "the connection made before the reload still talks to server A")

    # Invalid reload: refused, running config kept.
    with open(px.ini_path, "w") as f:
        f.write("[global]\nno_such_key = 1\n")
    os.kill(px.pid, signal.SIGHUP)
    wait_stderr(t, px, "reload failed", 1)
    t.check(px.alive(), "kaproxy survives an invalid reload")
    again = t.pair(srv_b, name="client-again")
    t.exchange(again, srv_b)
    t.check(True, "after a refused reload new connections still reach server B")
    for c in (again, new):
        c.ok("close")
        srv_b.ok("use %d" % c.server_conn)
        srv_b.ok("close")
    t.access_log.wait(lambda r: r["close_reason"] == "client_fin", 5)

    # Rotation: rename the log, SIGUSR1, the next line lands in a new file.
    rotated = t.access_log.path + ".1"
    os.rename(t.access_log.path, rotated)
    os.kill(px.pid, signal.SIGUSR1)
    lab.wait_until(lambda: os.path.exists(t.access_log.path), 5, "the access log to be reopened")
    before = os.path.getsize(rotated)
    t.access_log = lab.AccessLog(t.access_log.path)
    rot = t.pair(srv_b, name="client-rotate")
    rot.ok("close")
    srv_b.ok("use %d" % rot.server_conn)
    srv_b.ok("close")
    t.access_log.wait(lambda r: r["close_reason"] == "client_fin", 5, "a line in the reopened log")
    t.check(os.path.getsize(rotated) == before, "nothing more is written to the rotated file")

    # Drain: stop accepting, close what is left at shutdown_timeout (2 s).
    old.submit("wait_close 10")
    os.kill(px.pid, signal.SIGTERM)
    wait_stderr(t, px, "draining", 1)
    late = t.client("client-late")
    r = late.cmd("connect %s:7000 3" % lab.PROXY_CLIENT_IP)
    t.check(r.status == "ERR", "a connection attempt while draining is refused (%s)" % r)
    rec = t.access_log.wait(lambda r: r["close_reason"] == "shutdown", 10, "the shutdown line")
    t.check(1.0 <= rec["duration_ms"] / 1000.0, "the live connection was kept through the drain")
    r = old.reply(10)
    t.check(r.status in ("RESET", "EOF"), "the live client sees its connection end (%s)" % r)
    status = px.popen.wait(timeout=10)
    t.check(status == 0, "kaproxy exits 0 after the drain (got %s)" % status)
    t.kaproxy = None  # its exit was the point: the harness must not flag it


if __name__ == "__main__":
    lab.run(main, __doc__)
