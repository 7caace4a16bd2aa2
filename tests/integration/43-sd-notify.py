#!/usr/bin/env python3
"""kaproxy tells the service manager at NOTIFY_SOCKET each step, in order: READY=1 only once its listener and admin endpoint accept, RELOADING=1 with the monotonic clock then READY=1 around each SIGHUP (taken or refused), STATUS with the live connections (also from its timer), STOPPING=1 at SIGTERM.

The scenario binds the datagram socket a service manager would (a path in the
lab directory, which every network namespace sees) and runs the real binary
with NOTIFY_SOCKET pointing at it:

1. its listen address, then its admin address, already taken in the proxy
   namespace: kaproxy exits 1 having sent nothing (READY=1 never precedes
   the listeners or the admin endpoint);
2. started (two workers): the first message is READY=1, its STATUS "0 connections,
   1 listener"; when it arrives, the listener and the admin address are in
   LISTEN, and then a connection is proxied and /healthz answers 200;
3. SIGHUP with a second listener, one connection held: RELOADING=1 with a
   MONOTONIC_USEC between the clock read before the signal and after the
   message, then READY=1, "reloaded" already logged, STATUS "1 connection,
   2 listeners";
4. SIGHUP with an invalid file: RELOADING=1, then READY=1 with the refusal
   already logged and the STATUS saying the reload failed;
5. the connection closed: the timer's STATUS says "0 connections" within its
   5 s period (plus lab.SLACK);
6. SIGTERM: STOPPING=1, kaproxy exits 0, nothing after it.

Between these steps only STATUS-only messages may come; any other message,
or one missing or out of order, fails.
"""
import os
import signal
import socket
import time

import lab

ADMIN = "127.0.0.1:9901"
LISTEN = "%s:7000" % lab.PROXY_CLIENT_IP
SECOND = "%s:7010" % lab.PROXY_CLIENT_IP
STATUS_INTERVAL_S = 5          # src/main.c STATUS_INTERVAL_S
WAIT = 5.0                     # for a message that follows a signal


def now_us():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Manager:
    """The service manager's end: a bound AF_UNIX datagram socket."""

    def __init__(self, t):
        self.path = os.path.join(t.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.statuses = []        # (time, text) of every STATUS seen

    def _recv(self, timeout):
        """The next message as [(var, value)], or None after timeout s."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except (socket.timeout, BlockingIOError):
            return None
        text = data.decode()
        lab.log("notify: %r" % text)
        pairs = [tuple(line.split("=", 1)) for line in text.split("\n") if line]
        for p in pairs:
            if len(p) != 2:
                raise lab.Failure("not a VAR=VALUE line in %r" % text)
        for var, value in pairs:
            if var == "STATUS":
                self.statuses.append((time.monotonic(), value))
        return pairs

    def expect(self, what, var, timeout=WAIT):
        """The next message other than a STATUS alone; it must set var=1."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            msg = self._recv(max(left, 0.001))
            if msg is None:
                raise lab.Failure("no %s=1 within %.1fs (%s)" % (var, timeout, what))
            if {v for v, _ in msg} == {"STATUS"}:
                continue
            got = dict(msg)
            if got.get(var) != "1":
                raise lab.Failure("%s: expected %s=1 next, got %r" % (what, var, msg))
            return got

    def status_where(self, pred, timeout, what):
        """Wait for a STATUS for which pred(text) holds; its arrival time.
        Any message but a STATUS alone fails."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            msg = self._recv(max(left, 0.001))
            if msg is None:
                raise lab.Failure("no STATUS %s within %.1fs" % (what, timeout))
            if {v for v, _ in msg} != {"STATUS"}:
                raise lab.Failure("only STATUS expected while waiting for %s, got %r"
                                  % (what, msg))
            if pred(dict(msg)["STATUS"]):
                return time.monotonic()

    def nothing_but_status(self, what):
        """Everything queued now is a STATUS alone."""
        while True:
            msg = self._recv(0.001)
            if msg is None:
                return
            if {v for v, _ in msg} != {"STATUS"}:
                raise lab.Failure("%s: unexpected %r" % (what, msg))

    def close(self):
        self.sock.close()


def listen_sockets(px):
    """kaproxy's LISTEN sockets now: {'ip:port': how many}."""
    inodes = set(lab.proc_socket_fds(px.pid))
    count = {}
    for s in lab.proc_tcp(px.pid):
        if s["state"] == "LISTEN" and s["inode"] in inodes:
            count[s["local"]] = count.get(s["local"], 0) + 1
    return count


def refused_start(t, mgr, env, taken, what):
    """With taken ('ip:port') held by another socket, kaproxy exits 1 and
    has told the manager nothing."""
    squatter = t.peer("proxy", "squatter-" + taken.split(":")[1], listen=taken)
    px = lab.Kaproxy(t, t.kaproxy_bin, t.kaproxy_ini({"n": lab.listener()},
                     {"admin_listen": ADMIN}), name="kaproxy-" + what.replace(" ", "-"), env=env)
    lab.wait_until(lambda: not px.alive(), 15, "kaproxy to give up (%s taken)" % what)
    t.check(px.popen.returncode == 1, "kaproxy exits 1 when its %s is taken (got %s)"
            % (what, px.popen.returncode))
    t.check("Address already in use" in px.stderr_text(None),
            "kaproxy gave up because its %s was taken" % what)
    msg = mgr._recv(0.001)
    t.check(msg is None, "nothing sent by a kaproxy that could not open its %s (got %r)"
            % (what, msg))
    squatter.kill9()


def main(t):
    mgr = Manager(t)
    env = {"NOTIFY_SOCKET": mgr.path}
    srv = t.server()

    # 1. No READY=1 before the listener, nor before the admin endpoint.
    refused_start(t, mgr, env, LISTEN, "listener")
    refused_start(t, mgr, env, ADMIN, "admin endpoint")

    # 2. READY=1 when everything accepts.
    one = {"n": lab.listener()}
    # Two workers: READY=1 waits for the listening sockets of both, and the
    # count is over both.
    globals_ = {"admin_listen": ADMIN, "workers": "2"}
    px = lab.Kaproxy(t, t.kaproxy_bin, t.kaproxy_ini(one, globals_), env=env)
    t.kaproxy = px
    ready = mgr.expect("start-up", "READY", timeout=15)
    have = listen_sockets(px)
    t.check(have.get(LISTEN) == 2 and have.get(ADMIN) == 1,
            "when READY=1 arrives, both workers' sockets for the listener and the admin "
            "endpoint are in LISTEN (got %r)" % have)
    t.check(ready.get("STATUS") == "0 connections, 1 listener",
            "READY=1 carries STATUS '0 connections, 1 listener' (got %r)" % ready.get("STATUS"))
    cli = t.pair(srv)
    t.exchange(cli, srv)
    code, body = lab.Admin(t, ADMIN).request("/healthz")
    t.check(code == 200, "/healthz answers 200 after READY=1 (got %s %r)" % (code, body))

    # 3. A reload that is taken, with a connection held.
    two = dict(one, second=lab.listener(listen=SECOND))
    before = now_us()
    px.reload(t.kaproxy_ini(two, globals_))
    reloading = mgr.expect("SIGHUP", "RELOADING")
    after = now_us()
    usec = int(reloading.get("MONOTONIC_USEC", "-1"))
    t.check(before <= usec <= after, "MONOTONIC_USEC %d is between %d (before SIGHUP) and %d "
            "(RELOADING=1 received)" % (usec, before, after))
    ready = mgr.expect("after the reload", "READY")
    t.check(px.stderr_text(None).count("reloaded ") == 1,
            "READY=1 comes after the reload is done (logged 'reloaded')")
    t.check(ready.get("STATUS") == "1 connection, 2 listeners",
            "READY=1 after the reload: STATUS '1 connection, 2 listeners' (got %r)"
            % ready.get("STATUS"))
    t.wait_listening(px, {LISTEN, SECOND, ADMIN}, 5)

    # 4. A reload that is refused: READY=1 all the same, and the status says so.
    px.reload("[global]\nworkers = many\n")
    mgr.expect("SIGHUP, invalid file", "RELOADING")
    ready = mgr.expect("after the refused reload", "READY")
    t.check("reload failed" in px.stderr_text(None),
            "READY=1 comes after the refusal is logged")
    status = ready.get("STATUS", "")
    t.check(status.startswith("1 connection, 2 listeners") and "reload failed" in status,
            "READY=1 after a refused reload: the old configuration's figures and the refusal "
            "(got %r)" % status)
    t.exchange(cli, srv)

    # 5. The timer's STATUS follows the connection count.
    t.close_pair(cli, srv)
    t.access_log.of("n", 5)
    closed = time.monotonic()
    seen = mgr.status_where(lambda s: s.startswith("0 connections, 2 listeners"),
                            STATUS_INTERVAL_S + lab.SLACK, "'0 connections' from the timer")
    lab.log("STATUS '0 connections' %.2fs after the connection closed" % (seen - closed))

    # 6. STOPPING=1 at SIGTERM, then nothing more.
    px.signal(signal.SIGTERM)
    stopping = mgr.expect("SIGTERM", "STOPPING")
    t.check(stopping.get("STATUS", "").startswith("draining"),
            "STOPPING=1 says it is draining (got %r)" % stopping.get("STATUS"))
    t.wait_kaproxy_exit()
    mgr.nothing_but_status("after STOPPING=1")
    mgr.close()


if __name__ == "__main__":
    lab.run(main, __doc__, record=False)
