"""
lab: a three-namespace network for running kaproxy against real peers.

    client ns                 proxy ns                    server ns
    10.77.1.2 <--veth--> 10.77.1.1 | 10.77.2.1 <--veth--> 10.77.2.2

The proxy namespace does not forward, so the only way from client to server
is through the proxy under test.  Every name carries this process's PID, so
parallel or leftover runs never collide; namespaces left by runs whose PID is
gone are removed at start-up.  Everything this module creates is torn down on
any exit (normal, exception, SIGINT/SIGTERM/SIGHUP; atexit as a backstop), and
children get PR_SET_PDEATHSIG so even a SIGKILLed harness leaves no process.
Only PIDs started here are ever signalled.

With nat (lab.run(..., nat=SECONDS) or Lab(args, nat=SECONDS)) a NAT
namespace sits between client and proxy; the default topology is unchanged:

    client ns              nat ns                        proxy ns
    10.77.4.2 <--veth--> 10.77.4.1 | 10.77.1.2 <--veth--> 10.77.1.1 | ...

The NAT masquerades the client as 10.77.1.2 (the address the proxy sees in
both topologies) and behaves like a real one: conntrack established timeout
SECONDS, nf_conntrack_tcp_loose = 0 (a mid-stream packet never re-creates an
expired flow) and INVALID packets dropped in FORWARD and INPUT (silently: no
RST from the NAT itself).

check_within() also appends each measurement to a per-scenario file in
measure_dir() (the build directory's netns-measure/, or $KAPROXY_MEASURE_DIR)
for 99-measure-table.py.

A scenario script looks like:

    import lab
    def main(t):                      # t is a lab.Lab, already built
        px = t.start_kaproxy({"t": {...}})
        ...
        t.check(cond, "what went wrong")
    lab.run(main, __doc__)

Exit codes: 0 pass, 1 fail, 77 skipped (not root, or `ip netns` unusable).
"""

import argparse
import atexit
import ctypes
import datetime
import fcntl
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "peer.py")
CROWD = os.path.join(HERE, "crowd.py")
BROWSER_DIR = os.path.join(os.path.dirname(HERE), "browser")
BROWSER_DRIVER = os.path.join(BROWSER_DIR, "page-check.js")
SKIP = 77

NS_PREFIX = "kpx-"
ROLES = ("client", "proxy", "server")
# (role, address/prefix, gateway) of the interface each end namespace gets,
# and the proxy's address on that link.
CLIENT_IP, PROXY_CLIENT_IP = "10.77.1.2", "10.77.1.1"
SERVER_IP, PROXY_SERVER_IP = "10.77.2.2", "10.77.2.1"
LINKS = {
    "client": (CLIENT_IP, PROXY_CLIENT_IP),
    "server": (SERVER_IP, PROXY_SERVER_IP),
}
# NAT topology only: the client behind the NAT, the NAT's outside address
# is CLIENT_IP.
NAT_CLIENT_IP, NAT_INSIDE_IP = "10.77.4.2", "10.77.4.1"
NAT_TIMEOUT_S = 8


class Failure(Exception):
    """A scenario assertion failed (not a harness error)."""


class Skip(Exception):
    """The environment cannot run the scenario."""


def log(msg):
    print("[%7.3f] %s" % (time.monotonic() - _T0, msg), flush=True)


_T0 = time.monotonic()


def wait_until(cond, timeout, what, interval=0.02):
    """Poll cond() until it returns a true value or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise Failure("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


# --- timing tolerances -------------------------------------------------------

# How much later than its configured bound an event may be seen by the
# harness (an access-log line, a peer's socket, the NAT forgetting a flow, a
# packet answering something the harness did): the kernel's timer, kaproxy's
# reaction, the harness's polling, on a shared machine and under sanitizers.
# The excess measured on a quiet machine is 0.0-0.45 s (99-measure-table).
SLACK = 1.0


def timer_slack(seconds):
    """How late a kernel timer of that length may be on the wire, where both
    ends of the interval are stamped by the same capture: the timer wheel
    rounds long timers up by up to 1/8 of their length, plus scheduling."""
    return 0.2 + seconds / 8.0


def sh(argv, check=True, timeout=20):
    """Run a short command to completion; return CompletedProcess."""
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), r.returncode,
                                                 (r.stderr or r.stdout).strip()))
    return r


# --- children die with us -------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_PR_SET_PDEATHSIG = 1


def _child_setup():
    # Runs between fork and exec: no allocation, one pre-resolved call.
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


# --- /proc/PID/net/tcp: sockets seen from a process's own namespace --------

TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV",
              "04": "FIN_WAIT1", "05": "FIN_WAIT2", "06": "TIME_WAIT",
              "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK",
              "0A": "LISTEN", "0B": "CLOSING"}


def _hexaddr(text):
    ip, port = text.split(":")
    if len(ip) == 8:
        addr = socket.inet_ntop(socket.AF_INET, bytes.fromhex(ip)[::-1])
    else:
        raw = b"".join(bytes.fromhex(ip[i:i + 8])[::-1] for i in range(0, 32, 8))
        addr = socket.inet_ntop(socket.AF_INET6, raw)
        if addr.startswith("::ffff:"):
            addr = addr[7:]
        else:
            addr = "[%s]" % addr    # the [v6]:port form kaproxy's config and log use
    return "%s:%d" % (addr, int(port, 16))


def proc_tcp(pid):
    """TCP sockets in pid's network namespace: list of dicts (local, remote,
    state, inode, tx_queue: bytes sent and not yet acknowledged or not yet
    sent, rx_queue: bytes received and not yet read)."""
    out = []
    for name in ("tcp", "tcp6"):
        try:
            with open("/proc/%d/net/%s" % (pid, name)) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            col = line.split()
            out.append({"local": _hexaddr(col[1]), "remote": _hexaddr(col[2]),
                        "state": TCP_STATES.get(col[3], col[3]),
                        "inode": int(col[9]),
                        "tx_queue": int(col[4].split(":")[0], 16),
                        "rx_queue": int(col[4].split(":")[1], 16)})
    return out


def proc_fd_targets(pid):
    """(fd number, what it links to: 'socket:[INODE]', 'pipe:[INODE]', a
    path...) for each of pid's open file descriptors."""
    base = "/proc/%d/fd" % pid
    for fd in os.listdir(base):
        try:
            yield int(fd), os.readlink(os.path.join(base, fd))
        except OSError:
            continue    # closed since the listing


def proc_socket_fds(pid):
    """{socket inode: fd number} of pid's open file descriptors."""
    fds = {}
    for fd, target in proc_fd_targets(pid):
        m = re.match(r"socket:\[(\d+)\]", target)
        if m:
            fds[int(m.group(1))] = fd
    return fds


def proc_fd_count(pid):
    """How many file descriptors pid has open."""
    return len(os.listdir("/proc/%d/fd" % pid))


def proc_rss_kib(pid):
    """pid's resident set size in KiB (VmRSS)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise Failure("no VmRSS for pid %d" % pid)


def proc_fd_kinds(pid):
    """pid's open descriptors by kind: {"file", "socket", "pipe", "other"}
    (other: epoll, eventfd and the like), and "paths": the sorted targets of
    the "file" ones, so a check can say which file is still held."""
    kinds = {"file": 0, "socket": 0, "pipe": 0, "other": 0}
    paths = []
    base = "/proc/%d/fd" % pid
    for fd in os.listdir(base):
        try:
            target = os.readlink(os.path.join(base, fd))
        except OSError:
            continue    # closed since the listing
        if target.startswith("socket:"):
            kinds["socket"] += 1
        elif target.startswith("pipe:"):
            kinds["pipe"] += 1
        elif target.startswith("/"):
            kinds["file"] += 1
            paths.append(target)
        else:
            kinds["other"] += 1
    kinds["paths"] = sorted(paths)
    return kinds


def signal_pending(pid, sig):
    """True while sig, sent to process pid, has not been taken by any of its
    threads yet (ShdPnd).  A second signal of a kind still pending is merged
    with the first: send the next one only once this is False to have every
    one handled."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("ShdPnd:"):
                return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    raise Failure("no ShdPnd for pid %d" % pid)


def proc_usage(pid):
    """{"fds": open descriptors, "pipe_fds": how many of them are pipe ends,
    "rss_kib": resident KiB} of pid now."""
    return {"fds": proc_fd_count(pid),
            "pipe_fds": sum(len(fds) for fds in proc_pipes(pid).values()),
            "rss_kib": proc_rss_kib(pid)}


def wait_back_to_baseline(pid, base, rss_slack_kib, timeout=10.0, what="kaproxy",
                          pooled_pipes=0):
    """Wait until pid holds no more descriptors than in base (a proc_usage()
    taken before the load) and its RSS is within rss_slack_kib of base's;
    returns the usage seen.  The allocator may keep some freed memory, hence
    the slack; a descriptor has no excuse, except that pid may keep up to
    pooled_pipes empty pipes more than in base for reuse (kaproxy's pipe
    pool, PUMP_POOL_PIPES): every pipe it then holds must be empty, and
    every other descriptor must be gone."""
    seen = {}

    def back():
        seen.update(proc_usage(pid))
        extra = max(0, seen["pipe_fds"] - base["pipe_fds"])
        if seen["fds"] - extra > base["fds"] or extra > 2 * pooled_pipes:
            return False
        if extra:
            try:
                seen["pipe_bytes"] = sum(pipe_bytes(pid, fds[0])
                                         for fds in proc_pipes(pid).values())
            except OSError:     # a pipe closed while we looked: still settling
                return False
            if seen["pipe_bytes"]:
                return False
        return seen["rss_kib"] <= base["rss_kib"] + rss_slack_kib
    try:
        wait_until(back, timeout, "%s back to baseline" % what, interval=0.1)
    except Failure:
        raise Failure("%s not back to baseline: %s, baseline %s (RSS slack %d KiB, "
                      "%d pooled pipes allowed)" % (what, seen, base, rss_slack_kib,
                                                    pooled_pipes))
    log("%s back to baseline: %s (baseline %s)" % (what, seen, base))
    return dict(seen)


def asan_build(binary):
    """Whether binary was built with AddressSanitizer, whose quarantine keeps
    freed memory and whose shadow and redzones inflate every allocation:
    its RSS says nothing about kaproxy's own."""
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


def proc_pipes(pid):
    """pid's pipes: {pipe inode: [its descriptors in pid]} (both ends, usually)."""
    pipes = {}
    base = "/proc/%d/fd" % pid
    for fd in os.listdir(base):
        try:
            m = re.match(r"pipe:\[(\d+)\]", os.readlink(os.path.join(base, fd)))
        except OSError:
            continue
        if m:
            pipes.setdefault(int(m.group(1)), []).append(int(fd))
    return pipes


_FIONREAD = 0x541B


def pipe_bytes(pid, fd):
    """Bytes waiting in the pipe that is pid's descriptor fd (FIONREAD)."""
    dup = steal_fd(pid, fd)
    try:
        buf = bytearray(4)
        fcntl.ioctl(dup, _FIONREAD, buf)
        return int.from_bytes(buf, sys.byteorder)
    finally:
        os.close(dup)


_SYS_pidfd_open, _SYS_pidfd_getfd = 434, 438


def steal_fd(pid, fd):
    """A duplicate of pid's descriptor fd in this process (pidfd_getfd)."""
    pidfd = _libc.syscall(_SYS_pidfd_open, pid, 0)
    if pidfd < 0:
        raise OSError(ctypes.get_errno(), "pidfd_open(%d)" % pid)
    try:
        dup = _libc.syscall(_SYS_pidfd_getfd, pidfd, fd, 0)
        if dup < 0:
            raise OSError(ctypes.get_errno(), "pidfd_getfd(%d, %d)" % (pid, fd))
        return dup
    finally:
        os.close(pidfd)


# --- processes -------------------------------------------------------------

def _child_env(extra):
    """The harness's environment with extra's variables set, or removed
    where their value is None; None (inherit as is) without extra."""
    if not extra:
        return None
    env = dict(os.environ)
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


class Proc:
    """A process started in a namespace; output goes to files in the lab dir."""

    def __init__(self, lab, ns, argv, name, stdin=False, stdout_pipe=False, env=None):
        """env: variables to set in (value None: remove from) the harness's own
        environment for this process."""
        self.lab, self.ns, self.argv, self.name = lab, ns, argv, name
        self.out_path = os.path.join(lab.dir, name + ".out")
        self.err_path = os.path.join(lab.dir, name + ".err")
        self._out = None if stdout_pipe else open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.popen = subprocess.Popen(
            ["ip", "netns", "exec", ns] + argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else self._out,
            stderr=self._err, preexec_fn=_child_setup, start_new_session=True,
            env=_child_env(env))
        self.pid = self.popen.pid  # ip netns exec execs: this is the program
        lab._procs.append(self)
        log("started %s pid %d in %s: %s" % (name, self.pid, ns, " ".join(argv)))

    def alive(self):
        return self.popen.poll() is None

    def kill9(self):
        """SIGKILL this process (only ever a PID this lab started) and reap it."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)
        log("killed -9 %s pid %d" % (self.name, self.pid))

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        """Signal, wait up to timeout, then SIGKILL.  Returns the exit status."""
        if self.alive():
            try:
                os.kill(self.pid, sig)
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log("%s pid %d ignored signal %d for %.1fs, SIGKILL"
                    % (self.name, self.pid, sig, timeout))
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
            except ProcessLookupError:
                pass
        return self.popen.wait(timeout=10)

    def stderr_text(self, tail=4000):
        """The last tail bytes of what the process wrote to stderr (all of
        it when tail is None)."""
        try:
            with open(self.err_path, "rb") as f:
                data = f.read()
        except OSError:
            return ""
        if tail is not None:
            data = data[-tail:]
        return data.decode("utf-8", "replace")

    def _close_files(self):
        for f in (self._out, self._err):
            if f:
                f.close()


class Reply:
    """One peer answer: 'STATUS key=value ...'."""

    def __init__(self, line):
        self.raw = line
        parts = line.split()
        self.status = parts[0] if parts else ""
        self.fields = {}
        for p in parts[1:]:
            k, _, v = p.partition("=")
            self.fields[k] = v

    def __getitem__(self, k):
        return self.fields[k]

    def get(self, k, default=None):
        return self.fields.get(k, default)

    def __repr__(self):
        return self.raw


class Peer(Proc):
    """peer.py in a namespace, driven line by line (see peer.py for commands);
    script names another helper that answers the same way (bulkpeer.py), or
    command one that is not Python (tests/browser/page-check.js)."""

    def __init__(self, lab, role, argv, name, script=PEER, command=None):
        super().__init__(lab, lab.ns[role], (command or [sys.executable, "-u", script]) + argv,
                         name, stdin=True, stdout_pipe=True)
        self.role = role
        self.quiet = False      # True: commands and answers are not logged
        self._lines = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._pending = 0

    def _read(self):
        for raw in self.popen.stdout:
            self._lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self._lines.put(None)

    def reply(self, timeout):
        """The next answer line, waiting at most timeout seconds."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise Failure("%s: no answer within %.1fs" % (self.name, timeout))
        if line is None:
            raise Failure("%s exited (status %s): %s" % (
                self.name, self.popen.poll(), self.stderr_text().strip()))
        self._pending -= 1
        r = Reply(line)
        if not self.quiet:
            log("%s <- %s" % (self.name, line))
        return r

    def submit(self, line):
        """Send a command without waiting for its answer (see reply())."""
        if not self.quiet:
            log("%s -> %s" % (self.name, line))
        try:
            self.popen.stdin.write((line + "\n").encode())
            self.popen.stdin.flush()
        except BrokenPipeError:
            raise Failure("%s is gone: %s" % (self.name, self.stderr_text().strip()))
        self._pending += 1

    def cmd(self, line, timeout=15.0):
        """Send a command and return its answer."""
        self.submit(line)
        return self.reply(timeout)

    def ok(self, line, timeout=15.0):
        """cmd() that must answer OK."""
        r = self.cmd(line, timeout)
        if r.status != "OK":
            raise Failure("%s: %r answered %r" % (self.name, line, r.raw))
        return r


class Crowd(Peer):
    """crowd.py in a namespace: many connections driven as one, line by line
    (see crowd.py for commands)."""

    def __init__(self, lab, role, argv, name):
        super().__init__(lab, role, argv, name, script=CROWD)

    def wait(self, what, n, timeout=10.0):
        """crowd's `wait WHAT N T`, which must answer OK: the stats as a Reply."""
        return self.ok("wait %s %s %s" % (what, n, timeout), timeout + 5)


# --- access log ------------------------------------------------------------

def parse_ts(ts):
    """Access-log ts ('2026-11-24T12:00:00.123Z') -> POSIX seconds."""
    s = ts.rstrip("Z")
    if s.endswith("+00:00"):
        s = s[:-6]
    dt = datetime.datetime.fromisoformat(s)
    return dt.replace(tzinfo=datetime.timezone.utc).timestamp()


# What the contract (the spec's "Access log line") promises in every record
# of a closed connection: *_tcp are always there, null for a leg that never
# existed.
PROMISED = ("ts", "event", "id", "listener", "client", "upstream", "duration_ms",
            "bytes_from_client", "bytes_to_client", "close_reason", "teardown",
            "client_tcp", "upstream_tcp")
CLOSE_REASONS = ("client_fin", "upstream_fin", "client_reset", "upstream_reset",
                 "client_timeout", "upstream_timeout", "client_error", "upstream_error",
                 "connect_failed", "connect_timeout", "idle_timeout", "shutdown", "admin",
                 "bad_proxy_header")
DEAD_PEER = ("client_timeout", "upstream_timeout")     # these carry detect_ms, peer_state
PEER_STATES = ("silent", "not_reading")
NO_UPSTREAM = ("connect_failed", "connect_timeout", "bad_proxy_header")  # no upstream leg existed
TEARDOWNS = ("rst", "fin", "none")


def _well_formed(rec):
    try:
        parse_ts(rec["ts"])
    except ValueError:
        return False
    return all(isinstance(rec[k], int) and rec[k] >= 0
               for k in ("id", "duration_ms", "bytes_from_client", "bytes_to_client"))


class AccessLog:
    """Reads kaproxy's JSON-lines access log as it grows."""

    def __init__(self, path):
        self.path = path
        self._pos = 0
        self._partial = b""
        self.records = []   # every parsed record, with "_seen" (time.time())
        self.bad = []       # lines that were not a JSON object

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self._pos)
                data = f.read()
                self._pos = f.tell()
        except FileNotFoundError:
            return
        now = time.time()
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        for raw in lines:
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
                if not isinstance(rec, dict):
                    raise ValueError("not an object")
            except ValueError as e:
                # kaproxy promises one JSON object per line: anything else fails the run.
                self.bad.append((raw, str(e)))
                raise Failure("access log: unparsable line %r (%s)" % (raw, e))
            rec["_seen"] = now
            self.records.append(rec)
            log("access log: %s" % raw.decode("utf-8", "replace"))

    def wait(self, pred=lambda r: True, timeout=10.0, what="an access-log line"):
        """First record (old or new) matching pred, waiting up to timeout."""
        def find():
            self.poll()
            for r in self.records:
                if pred(r):
                    return r
            return None
        return wait_until(find, timeout, what)

    def of(self, listener, timeout=10.0, client=None):
        """The line of a connection on listener (from client 'ip:port' when
        given), waiting up to timeout."""
        return self.wait(lambda r: r["listener"] == listener
                         and client in (None, r["client"]), timeout,
                         "the access-log line of %s%s" % (
                             listener, "" if client is None else " from " + client))

    def closed(self, listener, client=None):
        """The lines already written for listener (from client): [] while its
        connections are open."""
        self.poll()
        return [r for r in self.records if r["listener"] == listener
                and client in (None, r["client"])]


# --- optional packet capture ---------------------------------------------

MARKER = b"kaproxy-lab-capture-marker"


class Capture:
    """dumpcap in a namespace writing a pcap; text() decodes it afterwards.

    dumpcap reports "File:" once its packet socket is live.  Packets still
    in the kernel ring are lost if it is stopped at once, so stop() first
    sends UDP markers to 127.0.0.1:9 (part of the filter) until one is in
    the file: everything captured before it has been written too."""

    def __init__(self, lab, role, bpf, iface="any"):
        self.lab, self.role = lab, role
        self.pcap = os.path.join(lab.dir, "capture-%d.pcap" % len(lab._procs))
        self.filter = "(%s) or (udp dst port 9 and dst host 127.0.0.1)" % bpf
        self.proc = Proc(lab, lab.ns[role],
                         ["dumpcap", "-n", "-q", "-i", iface, "-f", self.filter,
                          "-w", self.pcap], "dumpcap-%s" % role)
        wait_until(lambda: "File:" in self.proc.stderr_text()
                   or not self.proc.alive(), 15, "dumpcap to start capturing")
        if not self.proc.alive():
            raise RuntimeError("dumpcap failed: " + self.proc.stderr_text())

    def _flushed(self):
        try:
            with open(self.pcap, "rb") as f:
                return MARKER in f.read()
        except OSError:
            return False

    def stop(self):
        if not self.proc.alive():
            return
        marker = Proc(self.lab, self.lab.ns[self.role], [sys.executable, "-c",
                      "import socket, time\n"
                      "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                      "for _ in range(500):\n"
                      "    s.sendto(%r, ('127.0.0.1', 9)); time.sleep(0.02)\n" % MARKER],
                      "capture-marker")
        try:
            wait_until(self._flushed, 10, "the capture to be written out")
        finally:
            marker.stop(signal.SIGKILL)
            self.proc.stop(signal.SIGINT, timeout=5)

    FIELDS = ("frame.time_epoch", "ip.src", "tcp.srcport", "ip.dst", "tcp.dstport",
              "tcp.seq_raw", "tcp.ack_raw", "tcp.len", "tcp.flags")

    def packets(self, display_filter="tcp"):
        """The captured TCP packets as dicts: t (POSIX seconds), src, sport,
        dst, dport, seq, ack (raw, absolute), len, flags (int), and the
        booleans syn, fin, rst, ackf.  Stops the capture first."""
        self.stop()
        r = sh(["tshark", "-n", "-r", self.pcap, "-Y", display_filter, "-T", "fields",
                "-E", "separator=\t"] + [x for f in self.FIELDS for x in ("-e", f)],
               check=False, timeout=60)
        out = []
        for line in r.stdout.splitlines():
            col = line.split("\t")
            if len(col) != len(self.FIELDS) or not col[0] or not col[5]:
                continue
            flags = int(col[8], 16)
            out.append({"t": float(col[0]), "src": col[1], "sport": int(col[2]),
                        "dst": col[3], "dport": int(col[4]), "seq": int(col[5]),
                        "ack": int(col[6] or 0), "len": int(col[7] or 0), "flags": flags,
                        "fin": bool(flags & 1), "syn": bool(flags & 2),
                        "rst": bool(flags & 4), "ackf": bool(flags & 16)})
        return out

    def text(self, display_filter=None):
        """tshark's one-line summaries (absolute times), markers left out."""
        self.stop()
        shown = "not (udp.dstport == 9 and ip.dst == 127.0.0.1)"
        if display_filter:
            shown = "(%s) and %s" % (display_filter, shown)
        return sh(["tshark", "-n", "-r", self.pcap, "-t", "ad", "-Y", shown],
                  check=False).stdout


# --- the lab -----------------------------------------------------------------

def fmt_duration(v):
    """INI duration from seconds (number) or a ready string."""
    if isinstance(v, str):
        return v
    if float(v).is_integer():
        return "%ds" % v
    return "%dms" % round(v * 1000)


class Kaproxy(Proc):
    """A running kaproxy with its INI file and access log."""

    def __init__(self, lab, binary, ini_text, name="kaproxy", wrapper=(), env=None):
        self.ini_path = os.path.join(lab.dir, name + ".ini")
        with open(self.ini_path, "w") as f:
            f.write(ini_text)
        log("%s config:\n%s" % (name, ini_text.rstrip()))
        # wrapper: a command that execs the rest (e.g. prlimit), so the PID stays kaproxy's.
        # A NOTIFY_SOCKET the harness itself was given (run from a service
        # manager) is not kaproxy's to answer; a scenario may pass its own.
        env = dict({"NOTIFY_SOCKET": None}, **(env or {}))
        super().__init__(lab, lab.ns["proxy"], list(wrapper) + [binary, "-c", self.ini_path], name,
                         env=env)

    def signal(self, sig):
        os.kill(self.pid, sig)
        log("%s: sent %s" % (self.name, signal.Signals(sig).name))

    def wait_log(self, needle, count=1, timeout=5.0):
        """Wait until kaproxy's own log (stderr) holds needle count times."""
        wait_until(lambda: self.stderr_text(None).count(needle) >= count, timeout,
                   "%s to log %r (%d)" % (self.name, needle, count))

    def write_ini(self, ini_text):
        """Replace the INI file at once (a new file renamed over it, as an
        editor does), so a reload running meanwhile reads the old or the new
        text, never half of it."""
        tmp = self.ini_path + ".new"
        with open(tmp, "w") as f:
            f.write(ini_text)
        os.replace(tmp, self.ini_path)

    def reload(self, ini_text):
        """Replace the INI file with ini_text and send SIGHUP (the caller
        waits for the outcome in the log)."""
        self.write_ini(ini_text)
        self.signal(signal.SIGHUP)

    def drain(self):
        """SIGTERM, and wait until kaproxy says it is draining."""
        self.signal(signal.SIGTERM)
        self.wait_log("draining")


# --- the admin endpoint ------------------------------------------------------

ADMIN_LISTEN = "127.0.0.1:9901"
ADMIN_TIMEOUT = 5        # seconds for one admin request, connecting included


class Admin:
    """kaproxy's admin HTTP endpoint (or its status_listen), asked with curl
    from inside role's namespace (the proxy's by default); every request is
    bounded by ADMIN_TIMEOUT."""

    def __init__(self, lab, addr=ADMIN_LISTEN, role="proxy"):
        self.lab, self.addr, self.role = lab, addr, role

    def request(self, path, method="GET", headers=()):
        """(HTTP status, body); status 0 when there was no answer in time.
        HEAD returns the headers as the body."""
        # curl -X HEAD would wait for the body the headers announce.
        verb = ["-I"] if method == "HEAD" else ["-X", method]
        argv = ["curl", "-s", "--max-time", str(ADMIN_TIMEOUT)] + verb + [
                "-o", "-", "-w", "\n%{http_code}"]
        for h in headers:
            argv += ["-H", h]
        r = self.lab.run(self.role, argv + ["http://%s%s" % (self.addr, path)], check=False,
                         timeout=ADMIN_TIMEOUT + 5)
        body, _, code = r.stdout.rpartition("\n")
        return int(code or 0), body

    def get(self, path):
        """The body of GET path, which must answer 200."""
        code, body = self.request(path)
        if code != 200:
            raise Failure("GET %s answered %s: %r" % (path, code, body[:300]))
        return body

    def json(self, path):
        return json.loads(self.get(path))

    def metrics(self):
        """GET /metrics as {'name{labels}': value}."""
        return parse_metrics(self.get("/metrics"))


def parse_metrics(text):
    """Prometheus text exposition -> {'name{labels}': float}."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


def listener(listen="%s:7000" % PROXY_CLIENT_IP, upstream="%s:7001" % SERVER_IP,
             client=(1, 1, 2), upstream_policy=(1, 1, 2), **keys):
    """Keys of one [listener] section.  client/upstream_policy are
    (keepalive idle s, interval s, count); extra keys are copied verbatim."""
    d = {"listen": listen, "upstream": upstream, "connect_timeout": "2s"}
    for side, (idle, intvl, cnt) in (("client", client), ("upstream", upstream_policy)):
        d["%s_keepalive" % side] = "on"
        d["%s_keepalive_idle" % side] = fmt_duration(idle)
        d["%s_keepalive_interval" % side] = fmt_duration(intvl)
        d["%s_keepalive_count" % side] = str(cnt)
    d.update(keys)
    return d


def worst_case_s(policy):
    """Dead-peer bound of an idle leg: idle + interval * count."""
    idle, intvl, cnt = policy
    return idle + intvl * cnt


class Lab:
    def __init__(self, args, nat=None):
        """nat: None/False for the default three namespaces, else the NAT's
        conntrack established timeout in seconds (True: NAT_TIMEOUT_S)."""
        self.args = args
        self.kaproxy_bin = getattr(args, "kaproxy", None)
        self.pid = os.getpid()
        self.nat_timeout = (NAT_TIMEOUT_S if nat is True else nat) or None
        self.roles = ROLES + (("nat",) if self.nat_timeout else ())
        self.ns = {r: "%s%s-%d" % (NS_PREFIX, r[0], self.pid) for r in self.roles}
        # veth names (<=15 chars): kx<role><side><pid>
        self.veth = {
            "client": ("kxcc%d" % self.pid, "kxpc%d" % self.pid),
            "server": ("kxss%d" % self.pid, "kxps%d" % self.pid),
        }
        # Per link (named by its outer end's role): addresses (end, far end)
        # and the far end's role.
        self.links = dict(LINKS)
        self.far = {"client": "proxy", "server": "proxy"}
        if self.nat_timeout:
            self.veth["client"] = ("kxcc%d" % self.pid, "kxnc%d" % self.pid)
            self.veth["nat"] = ("kxnp%d" % self.pid, "kxpc%d" % self.pid)
            self.links["client"] = (NAT_CLIENT_IP, NAT_INSIDE_IP)
            self.links["nat"] = (CLIENT_IP, PROXY_CLIENT_IP)
            self.far["client"], self.far["nat"] = "nat", "proxy"
        self.measure_path = None
        self.scenario = None
        self.dir = tempfile.mkdtemp(prefix="kaproxy-lab-%d-" % self.pid)
        self._procs = []
        self._created = []
        self._closed = False
        self._nft_rules = {}
        self.access_log = AccessLog(os.path.join(self.dir, "access.log"))
        self.kaproxy = None
        self.failed = False

    # -- set-up ----------------------------------------------------------------

    def build(self):
        reap_stale_namespaces()
        for role in self.roles:
            self._add_ns(role)
        for role in ("client", "server"):
            self._link(role)
        if self.nat_timeout:
            self._link("nat")
            self._setup_nat()
        log("lab up: %s (dir %s)" % (", ".join(self.ns[r] for r in self.roles), self.dir))

    def _setup_nat(self):
        """The NAT namespace forwards and masquerades the client, and is as
        strict as a real NAT (see the module docstring)."""
        inside, outside = self.veth["client"][1], self.veth["nat"][0]
        for argv in (
                ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"],
                ["iptables", "-w", "5", "-t", "nat", "-A", "POSTROUTING", "-o", outside,
                 "-j", "MASQUERADE"],
                ["iptables", "-w", "5", "-A", "FORWARD", "-m", "conntrack", "--ctstate",
                 "INVALID", "-j", "DROP"],
                ["iptables", "-w", "5", "-A", "INPUT", "-m", "conntrack", "--ctstate",
                 "INVALID", "-j", "DROP"],
                # The conntrack sysctls exist once the rules above loaded it.
                ["sysctl", "-q", "-w", "net.netfilter.nf_conntrack_tcp_loose=0"],
                ["sysctl", "-q", "-w", "net.netfilter.nf_conntrack_tcp_timeout_established=%d"
                 % self.nat_timeout]):
            self.run("nat", argv)
        log("%s: NAT %s -> %s (masquerade as %s), conntrack established timeout %ds, "
            "tcp_loose 0, INVALID dropped" % (self.ns["nat"], inside, outside, CLIENT_IP,
                                              self.nat_timeout))

    def conntrack(self, dport=None):
        """The NAT's conntrack TCP entries (conntrack -L), optionally only
        those whose original destination port is dport: list of lines."""
        argv = ["conntrack", "-L", "-p", "tcp"]
        if dport is not None:
            argv += ["--dport", str(dport)]
        r = self.run("nat", argv, check=False)
        return [l for l in r.stdout.splitlines() if l.startswith("tcp")]

    def add_end(self, role, tag, ip, proxy_ip):
        """One more end namespace linked to the proxy's, like client and
        server: ip/24 on its side, proxy_ip on the proxy's.  tag is one
        letter naming it (kpx-TAG-PID), not the first letter of another
        role.  drop_all, drop_flow and reboot work on it; lab.close removes
        it.  Call after build()."""
        if len(tag) != 1 or any(n == "%s%s-%d" % (NS_PREFIX, tag, self.pid)
                                for n in self.ns.values()):
            raise ValueError("namespace tag %r is taken or not one letter" % tag)
        self.ns[role] = "%s%s-%d" % (NS_PREFIX, tag, self.pid)
        self.veth[role] = ("kx%se%d" % (tag, self.pid), "kx%sp%d" % (tag, self.pid))
        self.links[role] = (ip, proxy_ip)
        self.far[role] = "proxy"
        self._add_ns(role)
        self._link(role)
        log("%s linked: %s <-> %s" % (self.ns[role], ip, proxy_ip))

    def _add_ns(self, role):
        ns = self.ns[role]
        sh(["ip", "netns", "add", ns])
        self._created.append(ns)
        sh(["ip", "-n", ns, "link", "set", "lo", "up"])

    def _link(self, role):
        """veth between role's namespace and the proxy's (the NAT's for the
        client behind a NAT), addresses, routes."""
        end, proxy_end = self.veth[role]
        ip, proxy_ip = self.links[role]
        ns, pns = self.ns[role], self.ns[self.far[role]]
        sh(["ip", "link", "add", end, "netns", ns, "type", "veth",
            "peer", "name", proxy_end, "netns", pns])
        sh(["ip", "-n", ns, "addr", "add", ip + "/24", "dev", end])
        sh(["ip", "-n", pns, "addr", "add", proxy_ip + "/24", "dev", proxy_end])
        sh(["ip", "-n", ns, "link", "set", end, "up"])
        sh(["ip", "-n", pns, "link", "set", proxy_end, "up"])
        sh(["ip", "-n", ns, "route", "add", "default", "via", proxy_ip])
        # Addresses are usable at once (no DAD for IPv4); wait for carrier.
        for n, dev in ((ns, end), (pns, proxy_end)):
            wait_until(lambda: "LOWER_UP" in sh(["ip", "-n", n, "link", "show", dev]).stdout,
                       5, "%s up in %s" % (dev, n))

    # -- processes -----------------------------------------------------------------

    def run(self, role, argv, check=True, timeout=20):
        """Run a command to completion in role's namespace."""
        return sh(["ip", "netns", "exec", self.ns[role]] + argv, check, timeout)

    def spawn(self, role, argv, name):
        """Start a long-running command in role's namespace."""
        return Proc(self, self.ns[role], argv, name)

    def peer(self, role, name, listen=None, backlog=16):
        """peer.py in role's namespace: a server when listen ('ip:port') is
        given (accept with 'accept'), else a client ('connect IP:PORT')."""
        argv = ["--listen", listen, "--backlog", str(backlog)] if listen else []
        p = Peer(self, role, argv, name)
        r = p.reply(10)
        if r.status != "READY":
            raise Failure("%s did not start: %r" % (name, r.raw))
        return p

    def crowd(self, role, name, listen=None, expect="stream"):
        """crowd.py in role's namespace: a server accepting every connection
        when listen ('ip:port') is given, else a client of many connections
        expecting the server's stream or (expect="echo") its own bytes back."""
        argv = ["--listen", listen] if listen else ["--expect", expect]
        p = Crowd(self, role, argv, name)
        r = p.reply(10)
        if r.status != "READY":
            raise Failure("%s did not start: %r" % (name, r.raw))
        return p

    def browser(self, name="browser"):
        """tests/browser/page-check.js in the proxy namespace, started and
        READY: Debian's chromium ($KAPROXY_CHROMIUM, else /usr/bin/chromium)
        driven through playwright-core.  A missing chromium, node or
        playwright-core (`npm ci` in tests/browser) is a failure, not a skip."""
        chromium = os.environ.get("KAPROXY_CHROMIUM", "/usr/bin/chromium")
        self.check(os.access(chromium, os.X_OK),
                   "chromium at %s (tools/install-deps.sh installs Debian's chromium)" % chromium)
        self.check(shutil.which("node") is not None, "node is installed")
        self.check(os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")),
                   "playwright-core is installed (cd tests/browser && npm ci)")
        p = Peer(self, "proxy", [], name, command=["node", BROWSER_DRIVER])
        self.check(p.reply(10).status == "READY", "the browser driver starts")
        return p

    def server(self, listen="%s:7001" % SERVER_IP, name="server", backlog=16):
        """A listening peer in the server namespace."""
        return self.peer("server", name, listen, backlog)

    def client(self, name="client"):
        """A peer in the client namespace."""
        return self.peer("client", name)

    def pair(self, server, target="%s:7000" % PROXY_CLIENT_IP, name="client"):
        """A client connected through the proxy and the server's accepted side."""
        c = self.client(name)
        c.ok("connect %s 5" % target)
        c.server_conn = int(server.ok("accept 5")["conn"])  # for the server's "use N"
        return c

    def exchange(self, cli, srv, n=1000):
        """n bytes client -> server, then n bytes server -> client."""
        cli.ok("send %d" % n)
        srv.ok("expect %d" % n)
        srv.ok("send %d" % n)
        cli.ok("expect %d" % n)

    def both_ways(self, cli, srv, n, timeout=20):
        """n bytes each way at the same time (neither send waits for the
        other): both arrive whole, checksums matching."""
        for p, line in ((cli, "send"), (srv, "send"), (srv, "expect"), (cli, "expect")):
            p.submit("%s %d %d" % (line, n, timeout))
        c_sent, s_sent = cli.reply(timeout + 5), srv.reply(timeout + 5)
        s_got, c_got = srv.reply(timeout + 5), cli.reply(timeout + 5)
        for what, sent, got in (("client -> server", c_sent, s_got),
                                ("server -> client", s_sent, c_got)):
            self.check(sent.status == got.status == "OK" and sent["sha"] == got["sha"],
                       "%d bytes %s, checksums match (%s / %s)" % (n, what, sent, got))

    def half_close(self, cli, srv, more):
        """The client shuts down its write side: the server sees EOF after
        exactly the bytes sent, still sends `more` bytes that the client
        receives, then closes; the client sees an orderly EOF after them."""
        cli.ok("shutdown_wr")
        r = srv.cmd("wait_close 5", timeout=10)
        self.check(r.status == "EOF" and r["extra"] == "0",
                   "the server gets the client's FIN after exactly the bytes sent (%s)" % r)
        srv.submit("send %d 10" % more)
        r = cli.cmd("expect %d 10" % more, timeout=15)
        self.check(r.status == "OK", "the client still receives %d bytes after its SHUT_WR (%s)"
                   % (more, r))
        self.check(srv.reply(5).status == "OK", "the server sent them")
        srv.ok("close")
        r = cli.cmd("wait_close 5", timeout=10)
        self.check(r.status == "EOF" and r["extra"] == "0",
                   "the client gets an orderly EOF after all bytes (%s)" % r)

    def close_pair(self, cli, srv):
        """Close both ends of a pair() connection."""
        cli.ok("close")
        srv.ok("use %d" % cli.server_conn)
        srv.ok("close")

    def check_reset(self, cli, target, what):
        """cli connects to target and kaproxy resets it: the RST ends the
        established connection, or lands before connect() even returns (the
        handshake completed: a refused SYN would be ECONNREFUSED)."""
        r = cli.cmd("connect %s 5" % target)
        if r.status == "OK":
            r = cli.cmd("wait_close 5", timeout=10)
            self.check(r.status == "RESET", "%s: the client is reset (%s)" % (what, r))
        else:
            self.check(r.get("errno") == "ECONNRESET",
                       "%s: the client is reset during connect (%s)" % (what, r))

    def close_of(self, listener_name, watcher, timeout):
        """While watcher (a peer) waits for its connection to end, wait for
        the access-log line of listener_name.  Returns (record, the
        watcher's wait_close answer)."""
        watcher.submit("wait_close %d" % timeout)
        rec = self.access_log.of(listener_name, timeout)
        return rec, watcher.reply(timeout + 5)

    def check_closed(self, rec, reason, teardown, **exact):
        """The one check of a closed connection's access-log line: it has
        every key the contract promises, well typed; close_reason is reason;
        teardown is teardown (or one of a tuple of them); a dead-peer timeout
        carries detect_ms; and each key=value of exact holds."""
        what = "%s line %s" % (rec.get("listener"), rec.get("id"))
        missing = [k for k in PROMISED if k not in rec]
        self.check(not missing, "%s: every promised key is there (missing %s)" % (what, missing))
        self.check(_well_formed(rec), "%s: ts, id, duration and byte counts are well formed"
                   % what)
        self.check(rec["close_reason"] in CLOSE_REASONS and rec["teardown"] in TEARDOWNS,
                   "%s: close_reason and teardown from the contract's vocabulary" % what)
        self.check(rec["close_reason"] == reason, "%s: close_reason %s (got %r, detail %r)"
                   % (what, reason, rec["close_reason"], rec.get("detail")))
        allowed = teardown if isinstance(teardown, tuple) else (teardown,)
        self.check(rec["teardown"] in allowed, "%s: teardown %s (got %r)"
                   % (what, " or ".join(allowed), rec["teardown"]))
        self.check(rec["event"] == "close", "%s: event close (got %r)" % (what, rec["event"]))
        self.check(isinstance(rec["client_tcp"], dict), "%s: client_tcp figures" % what)
        if reason in NO_UPSTREAM:
            self.check(rec["upstream_tcp"] is None,
                       "%s: upstream_tcp null: no upstream leg existed" % what)
        else:
            self.check(isinstance(rec["upstream_tcp"], dict), "%s: upstream_tcp figures" % what)
        if reason in DEAD_PEER:
            self.check(isinstance(rec.get("detect_ms"), int) and rec["detect_ms"] >= 0,
                       "%s: detect_ms %r for a dead peer" % (what, rec.get("detect_ms")))
            self.check(rec.get("peer_state") in PEER_STATES,
                       "%s: peer_state %r for a dead peer" % (what, rec.get("peer_state")))
            self.check(("stalled_ms" in rec) == (rec["peer_state"] == "not_reading"),
                       "%s: stalled_ms exactly when the peer was not reading" % what)
        for k, want in exact.items():
            self.check(rec.get(k) == want, "%s: %s %r (got %r)" % (what, k, want, rec.get(k)))
        return rec

    # -- kaproxy -------------------------------------------------------------------

    def kaproxy_ini(self, listeners, global_keys=None):
        g = {"log_level": "debug", "access_log": self.access_log.path,
             "admin_listen": "off", "workers": "1", "shutdown_timeout": "1s"}
        g.update(global_keys or {})
        out = ["[global]"] + ["%s = %s" % kv for kv in g.items()] + [""]
        for name, keys in listeners.items():
            out.append("[listener %s]" % name)
            for k, v in keys.items():
                if k.endswith(("_idle", "_interval", "_timeout")) and not isinstance(v, str):
                    v = fmt_duration(v)
                out.append("%s = %s" % (k, v))
            out.append("")
        return "\n".join(out)

    def start_kaproxy(self, listeners, global_keys=None, wait=15.0, wrapper=(), env=None):
        """Write an INI for listeners ({name: {key: value}}), start kaproxy in the
        proxy namespace (env: see Proc) and wait until every listen address is
        in LISTEN."""
        if not self.kaproxy_bin:
            raise RuntimeError("no --kaproxy binary given")
        ini = self.kaproxy_ini(listeners, global_keys)
        px = Kaproxy(self, self.kaproxy_bin, ini, wrapper=wrapper, env=env)
        self.kaproxy = px
        wanted = {keys["listen"] for keys in listeners.values()}
        for key in ("admin_listen", "status_listen"):
            addr = (global_keys or {}).get(key, "off")
            if addr != "off":
                wanted.add(addr)
        self.wait_listening(px, wanted, wait)
        return px

    def wait_kaproxy_exit(self, timeout=10.0):
        """kaproxy (told to drain) exits 0 within timeout; from then on the
        harness no longer expects it to run."""
        px = self.kaproxy
        wait_until(lambda: not px.alive(), timeout, "kaproxy to exit")
        self.check(px.popen.returncode == 0, "kaproxy exits 0 after the drain (got %s)"
                   % px.popen.returncode)
        self.kaproxy = None

    def wait_listening(self, proc, addrs, timeout=15.0):
        """Wait until proc has a LISTEN socket on each 'ip:port' in addrs.

        Looks at /proc/PID/net/tcp instead of connecting, so readiness
        probes never become proxied connections in the access log."""
        addrs = set(addrs)

        def ready():
            if not proc.alive():
                raise Failure("%s exited with status %s before listening:\n%s" % (
                    proc.name, proc.popen.returncode, proc.stderr_text()))
            inodes = set(proc_socket_fds(proc.pid))
            have = {s["local"] for s in proc_tcp(proc.pid)
                    if s["state"] == "LISTEN" and s["inode"] in inodes}
            return addrs <= have
        wait_until(ready, timeout, "%s to listen on %s" % (proc.name, ", ".join(sorted(addrs))))
        log("%s listening on %s" % (proc.name, ", ".join(sorted(addrs))))

    def proxy_sockets(self, proc=None):
        """kaproxy's own TCP sockets: list of dicts with 'fd' added."""
        proc = proc or self.kaproxy
        fds = proc_socket_fds(proc.pid)
        return [dict(s, fd=fds[s["inode"]]) for s in proc_tcp(proc.pid)
                if s["inode"] in fds]

    # -- faults ----------------------------------------------------------------------

    def drop_all(self, role):
        """Silence role's namespace: DROP every IPv4 packet in and out (like a
        powered-off host or a broken path: no RST, no ICMP).  Returns the
        wall-clock time at which the rules were in place."""
        ns = self.ns[role]
        for chain in ("INPUT", "OUTPUT"):
            self.run(role, ["iptables", "-w", "5", "-I", chain, "1", "-j", "DROP"])
        t = time.time()
        log("%s is silent (iptables DROP in and out)" % ns)
        return t

    def undrop(self, role):
        for chain in ("INPUT", "OUTPUT"):
            self.run(role, ["iptables", "-w", "5", "-D", chain, "-j", "DROP"], check=False)
        log("%s talks again" % self.ns[role])

    def _flow_rules(self, local_port, remote_port):
        return (("INPUT", "--sport", str(remote_port), "--dport", str(local_port)),
                ("OUTPUT", "--sport", str(local_port), "--dport", str(remote_port)))

    def drop_flow(self, role, local_port, remote_port):
        """Silence one TCP connection of role's namespace (its port there,
        and the far end's): DROP its packets in and out, as drop_all does
        for the whole host.  Returns the wall-clock time the rules were in
        place."""
        for chain, *match in self._flow_rules(local_port, remote_port):
            self.run(role, ["iptables", "-w", "5", "-I", chain, "1", "-p", "tcp"] + match +
                     ["-j", "DROP"])
        t = time.time()
        log("%s: port %d <-> %d is silent (iptables DROP)" % (self.ns[role], local_port,
                                                                remote_port))
        return t

    def undrop_flow(self, role, local_port, remote_port):
        for chain, *match in self._flow_rules(local_port, remote_port):
            self.run(role, ["iptables", "-w", "5", "-D", chain, "-p", "tcp"] + match +
                     ["-j", "DROP"], check=False)

    def reboot(self, role):
        """Reboot role's host: it loses every TCP state and comes back with the
        same address.  Nothing the dying stack would send (FIN, RST) escapes:
        the namespace is silenced first, our processes in it are killed -9,
        the link is deleted, then namespace and link are created afresh."""
        if role == "proxy":
            raise ValueError("reboot the client or the server, not the proxy")
        ns = self.ns[role]
        self.drop_all(role)
        for p in self._procs:
            if p.ns == ns and p.alive():
                p.kill9()
        end, proxy_end = self.veth[role]
        # Deleting the proxy's end removes the pair at once, even if the old
        # namespace lingers for a while because of orphaned sockets.
        sh(["ip", "-n", self.ns[self.far[role]], "link", "del", proxy_end])
        sh(["ip", "netns", "del", ns])
        self._created.remove(ns)
        self._add_ns(role)
        self._link(role)
        log("%s rebooted (fresh namespace, same address %s)" % (ns, self.links[role][0]))

    def capture(self, bpf, role="proxy"):
        """Start dumpcap in role's namespace with capture filter bpf, or None
        when tshark is not installed."""
        if not (shutil.which("tshark") and shutil.which("dumpcap")):
            log("tshark/dumpcap not installed: no capture")
            return None
        return Capture(self, role, bpf)

    # -- assertions --------------------------------------------------------------

    def check(self, cond, msg):
        if cond:
            log("ok: " + msg)
        else:
            raise Failure(msg)

    def check_within(self, what, measured_s, bound_s, slack_s=SLACK, lower_s=None, *,
                     leg, situation=None):
        """Print a measured time next to its bound; fail above bound+slack
        (or below lower_s when given).  leg (client, upstream or both) and
        situation (optional) label the row of the measurement table
        (99-measure-table.py)."""
        line = "%s: measured %.2fs, configured bound %.2fs (+%.2fs slack)" % (
            what, measured_s, bound_s, slack_s)
        log(line)
        print("MEASURE " + line, flush=True)
        verdict = "ok"
        if measured_s > bound_s + slack_s:
            verdict = "too slow"
        elif lower_s is not None and measured_s < lower_s:
            verdict = "too early"
        self._record(what, measured_s, bound_s, slack_s, leg, situation, verdict)
        if verdict == "too slow":
            raise Failure(line + ": too slow")
        if verdict == "too early":
            raise Failure(line + ": earlier than the %.2fs the policy allows" % lower_s)

    def _record(self, what, measured_s, bound_s, slack_s, leg, situation, verdict):
        """Append one measurement to this scenario's file (tab separated:
        scenario, leg, situation, bound, slack, measured, verdict, what)."""
        if not self.measure_path:
            return
        row = [self.scenario or "-", leg, situation or "-", "%.2f" % bound_s,
               "%.2f" % slack_s, "%.2f" % measured_s, verdict, what]
        try:
            os.makedirs(os.path.dirname(self.measure_path), exist_ok=True)
            with open(self.measure_path, "a") as f:
                f.write("\t".join(c.replace("\t", " ") for c in row) + "\n")
        except OSError as e:
            log("cannot record the measurement in %s: %s" % (self.measure_path, e))

    # -- tear-down -------------------------------------------------------------------

    def close(self):
        """Kill what we started, delete what we created.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        # A second Ctrl-C or a SIGTERM must not cut the clean-up short.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        for p in reversed(self._procs):
            try:
                if p.alive():
                    if isinstance(p, Kaproxy):
                        st = p.stop(signal.SIGTERM, timeout=3)
                        log("%s exited with status %s after SIGTERM" % (p.name, st))
                    else:
                        p.stop(signal.SIGKILL, timeout=3)
            except Exception as e:
                log("cleanup: %s pid %d: %s" % (p.name, p.pid, e))
            # Each process leads a session of its own: whatever it forked
            # (nginx's workers, socat's children) goes with it, and nothing
            # else can be in that group.
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            p._close_files()
        for ns in reversed(self._created):
            sh(["ip", "netns", "del", ns], check=False)
        self._created = []
        if self.failed or os.environ.get("KAPROXY_LAB_KEEP"):
            log("lab files kept in %s" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    # A load scenario writes thousands of access-log lines; the failing run's
    # directory keeps them all, the dump shows the last ones.
    DUMP_RECORDS = 200

    def dump(self):
        """Print what helps diagnose a failure."""
        self.access_log.poll()
        records = self.access_log.records
        print("---- access log (%s)" % self.access_log.path)
        if len(records) > self.DUMP_RECORDS:
            print("(the last %d of %d lines)" % (self.DUMP_RECORDS, len(records)))
        for r in records[-self.DUMP_RECORDS:]:
            print(json.dumps({k: v for k, v in r.items() if k != "_seen"}))
        for p in self._procs:
            err = p.stderr_text(3000).strip()
            if err and isinstance(p, Kaproxy):
                print("---- %s stderr (tail)\n%s" % (p.name, err))
            elif err:
                print("---- %s stderr\n%s" % (p.name, err))
        sys.stdout.flush()


def reap_stale_namespaces():
    """Delete kpx-* namespaces whose owning PID no longer exists."""
    r = sh(["ip", "netns", "list"], check=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(r"^%s[a-z]-(\d+)$" % NS_PREFIX, name)
        if m and not os.path.exists("/proc/%s" % m.group(1)):
            log("removing stale namespace %s" % name)
            sh(["ip", "netns", "del", name], check=False)


def preflight():
    """Raise Skip unless we are root and ip netns works here."""
    if os.geteuid() != 0:
        raise Skip("needs root (network namespaces, iptables)")
    if not shutil.which("ip"):
        raise Skip("iproute2 `ip` not found")
    probe = "%sprobe-%d" % (NS_PREFIX, os.getpid())
    try:
        r = sh(["ip", "netns", "add", probe], check=False)
        if r.returncode != 0:
            raise Skip("`ip netns add` unusable: " + r.stderr.strip())
        r = sh(["ip", "netns", "exec", probe, "true"], check=False)
        if r.returncode != 0:
            raise Skip("`ip netns exec` unusable: " + r.stderr.strip())
    finally:
        sh(["ip", "netns", "del", probe], check=False)


_current = None


def _on_signal(signum, frame):
    # Turn the signal into an exception so every finally block runs.
    signal.signal(signum, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def _atexit():
    if _current is not None:
        _current.close()


def parse_args(extra=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--kaproxy", help="path to the kaproxy binary")
    ap.add_argument("--capture", action="store_true",
                    help="capture the proxy namespace with tshark and print it")
    if extra:
        extra(ap)
    return ap.parse_args()


def measure_dir(kaproxy_bin=None):
    """Where check_within() records: $KAPROXY_MEASURE_DIR, else netns-measure/
    in the build directory holding kaproxy_bin (a directory with a
    CMakeCache.txt), else /tmp/kaproxy-netns-measure."""
    d = os.environ.get("KAPROXY_MEASURE_DIR")
    if d:
        return os.path.abspath(d)
    if kaproxy_bin:
        bd = os.path.dirname(os.path.abspath(kaproxy_bin))
        if os.path.exists(os.path.join(bd, "CMakeCache.txt")):
            return os.path.join(bd, "netns-measure")
    return os.path.join(tempfile.gettempdir(), "kaproxy-netns-measure")


def run(main, doc, extra_args=None, need_kaproxy=True, nat=None, record=True):
    """Entry point of a scenario: build a lab, run main(lab), report, exit.

    nat: see Lab (may also be a function of the parsed arguments).
    record: keep this run's measurements in measure_dir() (the file of the
    previous run of the same script is replaced)."""
    global _current
    args = parse_args(extra_args)
    name = os.path.basename(sys.argv[0])
    scenario = os.path.splitext(name)[0]
    measure_path = None
    if record:
        measure_path = os.path.join(measure_dir(args.kaproxy), scenario + ".tsv")
        try:
            os.unlink(measure_path)
        except OSError:
            pass
    goal = (doc or "").strip().splitlines()[0] if doc else name
    print("==== %s: %s" % (name, goal), flush=True)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    atexit.register(_atexit)
    try:
        preflight()
    except Skip as e:
        print("SKIP %s: %s" % (name, e), flush=True)
        sys.exit(SKIP)
    if need_kaproxy:
        if not args.kaproxy or not os.access(args.kaproxy, os.X_OK):
            print("FAIL %s: kaproxy binary %r not found or not executable"
                  % (name, args.kaproxy), flush=True)
            sys.exit(1)
        args.kaproxy = os.path.abspath(args.kaproxy)
    lab = Lab(args, nat=nat(args) if callable(nat) else nat)
    lab.scenario, lab.measure_path = scenario, measure_path
    _current = lab
    status = 1
    started = time.monotonic()
    cap = None
    try:
        lab.build()
        if args.capture:
            cap = lab.capture("tcp")
        main(lab)
        px = lab.kaproxy
        if px is not None and not px.alive():
            raise Failure("kaproxy exited during the scenario (status %s):\n%s"
                          % (px.popen.returncode, px.stderr_text()))
        if px is not None:
            st = px.stop(signal.SIGTERM, timeout=5)
            if st != 0:
                raise Failure("kaproxy exited with status %s after SIGTERM:\n%s"
                              % (st, px.stderr_text()))
            log("kaproxy drained and exited 0 after SIGTERM")
        status = 0
    except Failure as e:
        lab.failed = True
        print("FAIL %s: %s" % (name, e), flush=True)
        lab.dump()
    except SystemExit as e:
        lab.failed = True
        print("ABORT %s: interrupted (exit %s)" % (name, e.code), flush=True)
        status = e.code if isinstance(e.code, int) else 1
    except BaseException:
        lab.failed = True
        print("ERROR %s (harness):" % name, flush=True)
        traceback.print_exc()
        lab.dump()
    finally:
        if cap is not None:
            try:
                print("---- capture in %s\n%s" % (lab.ns["proxy"], cap.text()), flush=True)
            except Exception as e:
                log("capture: %s" % e)
        lab.close()
        _current = None
    if status == 0:
        print("PASS %s (%.1fs)" % (name, time.monotonic() - started), flush=True)
    sys.exit(status)
