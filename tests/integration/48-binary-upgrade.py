#!/usr/bin/env python3
"""SIGUSR2 upgrades the binary without losing a connection: clients connecting in a tight loop throughout see no refused or reset connection, a transfer that started on the old process finishes byte-exact on it, SIGTERM during an upgrade stops the new process too; the service manager is told the new main PID (with READY=1, in one datagram) and nothing more by the old one, the old process closes its admin and status sockets at once (every /healthz is the new process's 200), keeps a connection open past shutdown_timeout (upgrade_drain_timeout off), bounds it by shutdown_timeout at SIGTERM, exits 0 once drained, and only the new one (another PID) serves; with upgrade_drain_timeout set, what is left on the old process is closed (shutdown) that long after the hand-over; an upgrade that fails (a broken configuration, a binary that exits 1, one that never gets ready, a binary gone) leaves the running process serving and its log says why, and a second SIGUSR2 meanwhile is ignored with a log line; the new process starts with SIGHUP, SIGUSR1 and SIGUSR2 blocked, so that one sent before its handlers are in place waits for them.

kaproxy runs with two workers (two SO_REUSEPORT sockets per address, both
handed over), two listeners and the admin endpoint, from a copy of the binary
in the lab directory so that the scenario can replace that file as a package
upgrade does (a new file renamed over it) without touching the build.  The
harness is a child subreaper, so the new process, orphaned when the old one
exits, is reaped here and its exit status seen.
"""
import ctypes
import os
import re
import shutil
import signal
import socket
import stat
import struct
import time

import lab

LOOP = "%s:7000" % lab.PROXY_CLIENT_IP
LONG = "%s:7010" % lab.PROXY_CLIENT_IP
ECHO = "%s:7003" % lab.SERVER_IP
ADMIN = "127.0.0.1:9901"
STATUS = "%s:9902" % lab.PROXY_CLIENT_IP
SHUTDOWN_S = 2             # shutdown_timeout: an upgrade's drain outlasts it
BOUNDED_S = 1.5            # upgrade_drain_timeout in the second, bounded, upgrade
GLOBAL = {"workers": "2", "admin_listen": ADMIN, "status_listen": STATUS,
          "shutdown_timeout": "%gs" % SHUTDOWN_S}
LOOPERS = 2                # client processes connecting in a tight loop
BATCH = 16                 # connections each opens in a row before using them
BEFORE_N = 50              # connections each makes before SIGUSR2
AFTER_N = 50               # ... and after the old process has exited
MIN_DURING = 100           # connections made while the upgrade ran, at least
PRE_BYTES = 30_000_000     # client -> server, submitted before SIGUSR2
POST_BYTES = 20_000_000    # server -> client, after the hand-over, on the old process
READY_TIMEOUT_S = 10       # src/upgrade.h UPGRADE_READY_TIMEOUT_S
PR_SET_CHILD_SUBREAPER = 36

ECHO_SERVER = r"""
import asyncio, sys
async def echo(r, w):
    try:
        while True:
            d = await r.read(65536)
            if not d:
                break
            w.write(d)
            await w.drain()
    except ConnectionError:
        pass
    w.close()
async def main():
    host, port = sys.argv[1].rsplit(":", 1)
    srv = await asyncio.start_server(echo, host, int(port), backlog=4096, reuse_address=True)
    print("READY", flush=True)
    await srv.serve_forever()
asyncio.run(main())
"""

# Batches of connections until the stop file exists: BATCH connects in a row
# (each returns once the handshake is done, before kaproxy accepts, so up to
# BATCH connections wait in the accept queues at any moment: what a socket
# closed with a queue would reset), then on each: send 16 bytes, read them
# back, close.  One line per connection:
# "<CLOCK_MONOTONIC at connect> ok|refused|reset|eof|mismatch|timeout|<errno>".
LOOPER = r"""
import errno, os, socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
stop, tag, batch = sys.argv[2], sys.argv[3], int(sys.argv[4])
def outcome(e):
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, ConnectionResetError):
        return "reset"
    if isinstance(e, EOFError):
        return "eof"
    if isinstance(e, socket.timeout):
        return "timeout"
    return errno.errorcode.get(e.errno, str(e.errno))
n = 0
while not os.path.exists(stop):
    conns = []
    for _ in range(batch):
        n += 1
        msg = ("%s-%010d" % (tag, n)).encode()[:16].ljust(16, b".")
        s = socket.socket()
        s.settimeout(5)
        t = time.monotonic()
        try:
            s.connect((host, int(port)))
            conns.append((t, s, msg, None))
        except OSError as e:
            s.close()
            conns.append((t, None, msg, outcome(e)))
    out = []
    for t, s, msg, res in conns:
        if s is not None:
            try:
                s.sendall(msg)
                got = b""
                while len(got) < len(msg):
                    d = s.recv(len(msg) - len(got))
                    if not d:
                        raise EOFError
                    got += d
                res = "ok" if got == msg else "mismatch"
            except (OSError, EOFError) as e:
                res = outcome(e)
            finally:
                s.close()
        out.append("%.6f %s" % (t, res))
    print("\n".join(out), flush=True)
"""


class Adopted:
    """The new kaproxy: not started by the lab but by the old kaproxy, and
    reparented to this harness (a subreaper) when the old one exits.  It has
    what lab.Lab.close() needs to stop it, so a failing run leaves nothing."""

    def __init__(self, lab_, pid, err_path, name="kaproxy-new"):
        self.lab, self.pid, self.name, self.ns = lab_, pid, name, lab_.ns["proxy"]
        self.err_path = err_path
        self.returncode = None
        lab_._procs.append(self)

    def poll(self):
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                # Not ours (yet): the old process has not exited.
                return None if os.path.exists("/proc/%d" % self.pid) else -1
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def alive(self):
        return self.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        if self.alive():
            os.kill(self.pid, sig)
            try:
                lab.wait_until(lambda: not self.alive(), timeout, "%s to exit" % self.name)
            except lab.Failure:
                os.kill(self.pid, signal.SIGKILL)
                lab.wait_until(lambda: not self.alive(), 10, "%s to die" % self.name)
        return self.returncode

    def stderr_text(self, tail=4000):
        with open(self.err_path, "rb") as f:
            data = f.read()
        return data[-tail:].decode("utf-8", "replace") if tail else data.decode("utf-8", "replace")

    def _close_files(self):
        pass


class Manager:
    """The service manager's end of NOTIFY_SOCKET, with each sender's PID."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.got = []   # (pid, {var: value})

    def recv(self, timeout):
        self.sock.settimeout(timeout)
        data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = None
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", cdata[:12])[0]
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
        self.got.append((pid, fields))
        lab.log("manager: from %s: %s" % (pid, fields))
        return pid, fields

    def until(self, pred, timeout, what):
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise lab.Failure("no %s within %.0f s" % (what, timeout))
            try:
                pid, fields = self.recv(left)
            except socket.timeout:
                continue
            if pred(pid, fields):
                return pid, fields

    def drain_pending(self):
        while True:
            try:
                self.recv(0.01)
            except (socket.timeout, BlockingIOError):
                return


def helper(t, name, source):
    path = os.path.join(t.dir, name)
    with open(path, "w") as f:
        f.write(source)
    return path


def looper_lines(proc):
    with open(proc.out_path) as f:
        return [line.split() for line in f.read().splitlines() if line.count(" ") == 1]


def replace_file(path, data=None, src=None, mode=0o755):
    """Put a new file at path the way a package upgrade does: write it aside, rename it over."""
    tmp = path + ".new"
    if src is not None:
        shutil.copyfile(src, tmp)
    else:
        with open(tmp, "w") as f:
            f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def serves(t, srv, name):
    """A new connection through the long listener reaches the server, both ways."""
    c = t.pair(srv, target=LONG, name=name)
    t.exchange(c, srv, 1000)
    t.close_pair(c, srv)


def failed_upgrade(t, px, why_pattern, what):
    """SIGUSR2 to px, which must log a failed upgrade matching why_pattern and keep serving."""
    n = px.stderr_text(None).count("binary upgrade failed")
    os.kill(px.pid, signal.SIGUSR2)
    lab.wait_until(lambda: px.stderr_text(None).count("binary upgrade failed") > n,
                   READY_TIMEOUT_S + 5, "the upgrade (%s) to fail" % what)
    lines = [l for l in px.stderr_text(None).splitlines() if "binary upgrade failed" in l]
    t.check(re.search(why_pattern, lines[-1]) is not None,
            "%s: the log says why (%r)" % (what, lines[-1]))
    t.check(px.alive(), "%s: the running process (%d) is still there" % (what, px.pid))


def sig_blocked(pid):
    """pid's blocked signals (SigBlk), as a bit mask: signal N is bit N - 1."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("SigBlk:"):
                return int(line.split()[1], 16)
    raise lab.Failure("no SigBlk for pid %d" % pid)


def listening_inodes(pid):
    """The socket inodes of pid's LISTEN sockets: the same inode in two
    processes is one socket, with one accept queue."""
    mine = set(lab.proc_socket_fds(pid))
    return {s["inode"] for s in lab.proc_tcp(pid) if s["state"] == "LISTEN" and s["inode"] in mine}


def main(t):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise lab.Failure("prctl PR_SET_CHILD_SUBREAPER: errno %d" % ctypes.get_errno())
    binary = os.path.join(t.dir, "kaproxy")
    shutil.copyfile(os.path.abspath(t.kaproxy_bin), binary)
    os.chmod(binary, 0o755)
    t.kaproxy_bin = binary
    manager = Manager(os.path.join(t.dir, "notify.sock"))

    echo = t.spawn("server", ["python3", "-u", helper(t, "echo.py", ECHO_SERVER), ECHO],
                   "echo-server")
    lab.wait_until(lambda: "READY" in open(echo.out_path).read(), 10, "the echo server")
    srv = t.server()
    listeners = {"loop": lab.listener(listen=LOOP, upstream=ECHO),
                 "long": lab.listener(listen=LONG, log_interval="1s")}
    old = t.start_kaproxy(listeners, GLOBAL, env={"NOTIFY_SOCKET": manager.path})
    pid, fields = manager.until(lambda p, f: "READY" in f, 10, "READY=1 at start-up")
    t.check(pid == old.pid, "READY=1 at start-up comes from kaproxy (%s)" % pid)

    # Connections on the old process: one carrying bytes, one idle.
    long_c = t.pair(srv, target=LONG, name="client-long")
    t.exchange(long_c, srv, 1000)
    idle_c = t.pair(srv, target=LONG, name="client-idle")
    t.exchange(idle_c, srv, 100)
    srv.ok("use %d" % long_c.server_conn)

    # Clients connecting in a tight loop, from before the upgrade to after it.
    stop = os.path.join(t.dir, "stop-loopers")
    loop_src = helper(t, "looper.py", LOOPER)
    loopers = [t.spawn("client", ["python3", "-u", loop_src, LOOP, stop, "c%d" % i, str(BATCH)],
                       "looper-%d" % i) for i in range(LOOPERS)]
    lab.wait_until(lambda: all(len(looper_lines(p)) >= BEFORE_N for p in loopers), 20,
                   "%d connections from each looper before the upgrade" % BEFORE_N)

    # A package upgrade: a new file at the same path; the running one's is now deleted.
    replace_file(binary, src=os.path.abspath(t.args.kaproxy))
    t.check(os.readlink("/proc/%d/exe" % old.pid).endswith("(deleted)"),
            "the running binary's file has been replaced")

    # Bytes in flight on the long connection while the upgrade runs.
    long_c.submit("send %d 60" % PRE_BYTES)
    srv.submit("expect %d 60" % PRE_BYTES)
    old_sockets = listening_inodes(old.pid)
    t.check(len(old_sockets) == 2 * 2 + 2, "the old process listens on %d sockets: two workers' "
            "for each of two listeners, the admin's and the status address's" % len(old_sockets))
    manager.drain_pending()
    t_signal = time.monotonic()
    old.signal(signal.SIGUSR2)
    old.wait_log("took over; draining: live connections run until they end",
                 timeout=READY_TIMEOUT_S + 5)
    t_takeover, wall_takeover = time.monotonic(), time.time()
    m = re.search(r"process (\d+) took over", old.stderr_text(None))
    new_pid = int(m.group(1))
    new = Adopted(t, new_pid, old.err_path)
    t.check(new_pid != old.pid and new.alive(), "a new process %d runs beside the old %d"
            % (new_pid, old.pid))
    t.check(os.readlink("/proc/%d/exe" % new_pid) == binary,
            "the new process runs the file now at %s" % binary)
    new_sockets = listening_inodes(new_pid)
    t.check(new_sockets == old_sockets, "the new process listens on the very sockets the old one "
            "did (one accept queue each, none bound alongside): %s / %s"
            % (sorted(new_sockets), sorted(old_sockets)))
    pid, fields = manager.until(lambda p, f: "MAINPID" in f, 5, "MAINPID=")
    t.check(pid == old.pid and fields.get("MAINPID") == str(new_pid) and fields.get("READY") == "1",
            "the old process tells the manager MAINPID=%d and READY=1 in one datagram (%s: %s)"
            % (new_pid, pid, fields))
    t.check(not any(p == new_pid for p, f in manager.got),
            "the new process sent nothing before the old one named it main")

    # The transfer submitted before SIGUSR2 completes, and more after the hand-over.
    sent, got = long_c.reply(70), srv.reply(70)
    t.check(sent.status == got.status == "OK" and sent["sha"] == got["sha"],
            "%d bytes client -> server across the upgrade, checksums match (%s / %s)"
            % (PRE_BYTES, sent, got))
    t.check(old.alive(), "the old process still runs while its connection is open")
    # The old process closed its copies of the admin and status sockets: every
    # probe reaches the new process (the old one would answer 503 draining).
    lab.wait_until(lambda: not listening_inodes(old.pid), 5,
                   "the old process to listen on nothing, admin and status sockets included")
    for addr in (ADMIN, STATUS):
        codes = [lab.Admin(t, addr).request("/healthz")[0] for _ in range(20)]
        t.check(codes == [200] * 20, "while the old process drains, /healthz on %s answers 200 "
                "every time, from the new process (got %s)" % (addr, codes))
    srv.submit("send %d 60" % POST_BYTES)
    got = long_c.cmd("expect %d 60" % POST_BYTES, timeout=70)
    sent = srv.reply(10)
    t.check(sent.status == got.status == "OK" and sent["sha"] == got["sha"],
            "%d bytes server -> client through the draining old process, checksums match "
            "(%s / %s)" % (POST_BYTES, sent, got))
    t.check(old.alive(), "the old process still runs while its connection is open")
    t.close_pair(long_c, srv)
    rec = t.access_log.wait(lambda r: r.get("listener") == "long" and r["event"] == "close", 10,
                            "the long connection's line")
    t.check_closed(rec, "client_fin", ("none", "fin"), bytes_from_client=1000 + PRE_BYTES,
                   bytes_to_client=1000 + POST_BYTES)

    # upgrade_drain_timeout is off: the idle connection outlives shutdown_timeout
    # on the old process, and still carries bytes both ways.
    left = t_takeover + SHUTDOWN_S + 1.5 - time.monotonic()
    if left > 0:
        time.sleep(left)  # the time that must pass, not a wait for an event
    t.check(old.alive(), "the old process still runs %.1f s after the hand-over, past "
            "shutdown_timeout (%g s), with a connection open" % (time.monotonic() - t_takeover,
                                                                 SHUTDOWN_S))
    srv.ok("use %d" % idle_c.server_conn)
    t.exchange(idle_c, srv, 100)
    # Its progress records go on (log_interval 1s) while the old process drains.
    t.access_log.poll()
    progress = [r for r in t.access_log.records if r["event"] == "progress" and
                r["listener"] == "long" and lab.parse_ts(r["ts"]) > wall_takeover + SHUTDOWN_S]
    t.check(progress and progress[-1]["bytes_from_client"] >= 100,
            "the idle connection's progress records are written by the draining old process "
            "(%d after %g s)" % (len(progress), SHUTDOWN_S))
    # SIGTERM to the old process bounds what is left by shutdown_timeout: not at once.
    idle_c.submit("wait_close %d" % (SHUTDOWN_S + 10))
    t_term = time.monotonic()
    old.signal(signal.SIGTERM)
    old.wait_log("draining after the upgrade: closing what is left in %d ms"
                 % (SHUTDOWN_S * 1000))
    rec = t.access_log.wait(lambda r: r.get("listener") == "long" and
                            r.get("close_reason") == "shutdown",
                            SHUTDOWN_S + 10, "the idle connection's line")
    closed_after = time.monotonic() - t_term
    t.check_closed(rec, "shutdown", "rst", bytes_from_client=200, bytes_to_client=200)
    r = idle_c.reply(5)
    t.check(r.status == "RESET", "the idle client sees its connection reset (%s)" % r)
    t.check(SHUTDOWN_S - 0.3 <= closed_after <= SHUTDOWN_S + lab.SLACK,
            "SIGTERM to the draining old process closed the idle connection after "
            "shutdown_timeout: %.2f s (%g s)" % (closed_after, SHUTDOWN_S))
    t.wait_kaproxy_exit(10)
    t_exit = time.monotonic()
    t.check(new.alive(), "the new process runs on after the old one exited")
    t.wait_listening(new, {LOOP, LONG, ADMIN}, 5)
    n_exit = {p.name: len(looper_lines(p)) for p in loopers}
    lab.wait_until(lambda: all(len(looper_lines(p)) >= n_exit[p.name] + AFTER_N for p in loopers),
                   20, "%d more connections from each looper on the new process" % AFTER_N)
    with open(stop, "w"):
        pass
    lab.wait_until(lambda: not any(p.alive() for p in loopers), 10, "the loopers to stop")
    results = [r for p in loopers for r in looper_lines(p)]
    failures = [r for r in results if r[1] != "ok"]
    during = [r for r in results if t_signal <= float(r[0]) <= t_exit]
    lab.log("loopers: %d connections, %d during the upgrade (%.2f s), %d failed: %s"
            % (len(results), len(during), t_exit - t_signal, len(failures),
               sorted({r[1] for r in failures})))
    t.check(not failures, "no connection refused, reset or cut short: %d of %d failed (%s)"
            % (len(failures), len(results), failures[:5]))
    t.check(len(during) >= MIN_DURING,
            "%d connections made while the upgrade ran (between SIGUSR2 and the old one's exit), "
            "at least %d" % (len(during), MIN_DURING))
    t.check("draining" in old.stderr_text(None) and
            not any(p == old.pid for p, f in manager.got if "STOPPING" in f),
            "the old one drained and never told the manager STOPPING=1")
    t.check(lab.Admin(t, ADMIN).request("/healthz")[0] == 200,
            "the new process's admin endpoint answers /healthz 200")
    serves(t, srv, "client-after")

    # Failures: the running (new) process keeps serving each time.
    px = new
    ini = old.ini_path
    good = open(ini).read()
    with open(ini, "w") as f:
        f.write(good.replace("[global]\n", "[global]\nno_such_key = 1\n", 1))
    failed_upgrade(t, px, r"exited with status 1", "a broken configuration")
    t.check("no_such_key" in px.stderr_text(None),
            "the new process's refusal of the configuration is in the log")
    serves(t, srv, "client-broken-config")
    with open(ini, "w") as f:
        f.write(good)

    real = binary + ".real"
    shutil.copyfile(binary, real)
    replace_file(binary, "#!/bin/sh\necho 'not kaproxy: exiting 1' >&2\nexit 1\n")
    failed_upgrade(t, px, r"exited with status 1", "a binary that exits 1")
    serves(t, srv, "client-exit-1")

    replace_file(binary, "#!/bin/sh\nexec sleep 60\n")
    n_ignored = px.stderr_text(None).count("SIGUSR2 ignored")
    os.kill(px.pid, signal.SIGUSR2)
    lab.wait_until(lambda: "binary upgrade: started" in px.stderr_text(None).split(
        "not kaproxy: exiting 1")[-1], 5, "the hanging binary to be started")
    os.kill(px.pid, signal.SIGUSR2)
    lab.wait_until(lambda: px.stderr_text(None).count("SIGUSR2 ignored") > n_ignored, 5,
                   "the second SIGUSR2 to be ignored")
    # The new process starts with SIGHUP, SIGUSR1 and SIGUSR2 held (blocked):
    # one sent before its handlers are in place waits for them, rather than
    # ending it (their default action).
    hanging = int(re.findall(r"binary upgrade: started \S+ as process (\d+)",
                             px.stderr_text(None))[-1])
    blocked = sig_blocked(hanging)
    t.check(all(blocked >> (s - 1) & 1 for s in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)),
            "the new process started with SIGHUP, SIGUSR1 and SIGUSR2 blocked (SigBlk %x)"
            % blocked)
    serves(t, srv, "client-while-hanging")
    n = px.stderr_text(None).count("binary upgrade failed")
    lab.wait_until(lambda: px.stderr_text(None).count("binary upgrade failed") > n,
                   READY_TIMEOUT_S + 5, "the hanging upgrade to be given up")
    last = [l for l in px.stderr_text(None).splitlines() if "binary upgrade failed" in l][-1]
    t.check("killed by signal 9" in last and "not ready in time" in last,
            "a binary never ready is killed after %d s, and the log says so (%r)"
            % (READY_TIMEOUT_S, last))
    t.check("not ready within %d s" % READY_TIMEOUT_S in px.stderr_text(None),
            "the kill is logged with its bound")
    serves(t, srv, "client-after-hang")

    os.unlink(binary)
    failed_upgrade(t, px, r"cannot start .*No such file", "a binary that is gone")
    serves(t, srv, "client-gone")

    t.check(px.alive() and px.pid == new_pid, "after four failed upgrades the same process serves")
    t.check(stat.S_ISREG(os.stat(real).st_mode), "the real binary was kept aside")
    pid, fields = manager.until(
        lambda p, f: p == new_pid and "binary upgrade failed" in f.get("STATUS", ""),
        5 + lab.SLACK, "a STATUS saying the last binary upgrade failed")
    t.check(True, "the service manager's status says the last upgrade failed (%s)" % fields)

    # A second upgrade, now with upgrade_drain_timeout: what is still open on
    # the old process is closed (shutdown) that long after the hand-over, and
    # the old process exits 0.
    replace_file(binary, src=real)
    with open(ini, "w") as f:
        f.write(good.replace("[global]\n", "[global]\nupgrade_drain_timeout = %gs\n"
                             % BOUNDED_S, 1))
    n = px.stderr_text(None).count("reloaded ")
    os.kill(px.pid, signal.SIGHUP)
    lab.wait_until(lambda: px.stderr_text(None).count("reloaded ") > n, 5,
                   "the reload with upgrade_drain_timeout")
    bounded_c = t.pair(srv, target=LONG, name="client-bounded")
    t.exchange(bounded_c, srv, 100)
    bounded_c.submit("wait_close %d" % (BOUNDED_S + 15))
    needle = "took over; draining: closing what is left in %d ms" % (BOUNDED_S * 1000)
    os.kill(px.pid, signal.SIGUSR2)
    lab.wait_until(lambda: needle in px.stderr_text(None), READY_TIMEOUT_S + 5,
                   "the bounded upgrade's hand-over")
    t_takeover = time.monotonic()
    newest_pid = int(re.findall(r"process (\d+) took over", px.stderr_text(None))[-1])
    newest = Adopted(t, newest_pid, px.err_path, name="kaproxy-newest")
    rec = t.access_log.wait(lambda r: r.get("listener") == "long" and
                            r.get("close_reason") == "shutdown" and r.get("bytes_to_client") == 100,
                            BOUNDED_S + 10, "the bounded drain's line")
    closed_after = time.monotonic() - t_takeover
    t.check_closed(rec, "shutdown", "rst", bytes_from_client=100, bytes_to_client=100)
    r = bounded_c.reply(5)
    t.check(r.status == "RESET", "the client on the old process sees its connection reset (%s)"
            % r)
    t.check(BOUNDED_S - 0.3 <= closed_after <= BOUNDED_S + lab.SLACK,
            "upgrade_drain_timeout %g s: the connection left on the old process closed %.2f s "
            "after the hand-over" % (BOUNDED_S, closed_after))
    lab.wait_until(lambda: not px.alive(), 10, "the old process to exit after its bounded drain")
    t.check(px.returncode == 0, "the old process exits 0 (got %s)" % px.returncode)
    t.check(newest.alive(), "the newest process %d serves" % newest_pid)
    serves(t, srv, "client-after-bounded")
    px = newest

    # SIGTERM while an upgrade is under way: the new process must not outlive
    # the service.  It is held at a FIFO (a binary slow to start) until then.
    gate = os.path.join(t.dir, "gate")
    os.mkfifo(gate)
    replace_file(binary, "#!/bin/sh\nread go < %s\nexec %s \"$@\"\n" % (gate, real))
    n = px.stderr_text(None).count("binary upgrade: started")
    os.kill(px.pid, signal.SIGUSR2)
    lab.wait_until(lambda: px.stderr_text(None).count("binary upgrade: started") > n, 5,
                   "the slow binary to be started")
    child = int(re.findall(r"binary upgrade: started \S+ as process (\d+)",
                           px.stderr_text(None))[-1])
    slow = Adopted(t, child, px.err_path, name="kaproxy-slow")
    os.kill(px.pid, signal.SIGTERM)
    lab.wait_until(lambda: "binary upgrade abandoned (draining): telling process %d to stop"
                   % child in px.stderr_text(None), 5, "the upgrade to be abandoned")
    lab.wait_until(lambda: not px.alive(), 10, "the running process to exit")
    t.check(px.returncode == 0, "the running process exits 0 at SIGTERM (got %s)" % px.returncode)
    lab.wait_until(lambda: not slow.alive(), 10, "the new process on its way to exit too")
    # Whoever reaps it tells how it ended: this harness (a subreaper) once the
    # old process has exited, or the old process itself, which logs it.
    reaped = "new process %d was killed by signal %d" % (child, signal.SIGTERM)
    t.check(slow.returncode == -signal.SIGTERM or
            (slow.returncode is None and reaped in px.stderr_text(None)),
            "the new process on its way was stopped by SIGTERM (exit %s, or the old "
            "process logged %r)" % (slow.returncode, reaped))


lab.run(main, __doc__)
