#!/usr/bin/env python3
"""Under a concurrent random mix of transfers, half-closes and every failure of the keepalive matrix on both legs, each connection ends exactly as injected and kaproxy ends as it began: every byte a live peer sent arrives intact, one access-log record per connection with the close_reason and teardown of its fault, bystanders untouched, nothing left in /connections, in kaproxy's sockets, descriptors or memory.

    python3 tests/integration/soak-matrix.py --kaproxy build/kaproxy [--minutes M] [--seed S]
        [--slots N] [--kinds drop,reboot,...]

M (default $KAPROXY_SOAK_MINUTES, else 3) is how long new connections are
started; the run then waits for the last ones to end and checks.  The seed is
printed at the start and with a failure: the same seed gives every
connection number the same kind, leg, teardown and sizes (the slot that
runs it is up to timing; reboot rounds are numbered r1, r2, .. apart).

Each of N slots (default 6) runs one connection at a time, over and over,
each with its own client and server processes (peer.py, which verifies
every byte it receives against the stream pattern) and its own listeners
and server port, so a fault hits only its victim:

    kind        leg       what is done                              close_reason     other peer sees
    transfer    -         random sizes one way or both at once,     <closer>_fin     EOF (teardown none)
                          then one peer closes
    half-close  the one   that peer shuts down writing while the    <leg>_fin        EOF (none)
                that shuts  other's bytes keep coming, all delivered
    drop        victim    idle, then iptables DROP of that one      <leg>_timeout    RST, or EOF (fin)
                          connection (silent death, probes unanswered)
    busy-drop   victim    DROP, then the other peer sends: bytes in  <leg>_timeout   RST, or EOF (fin)
                          flight, no probes, TCP_USER_TIMEOUT (path broken while busy)
    kill-fin    victim    it sends, then kill -9: its kernel sends   <leg>_fin       all bytes, EOF, and
                          the bytes and FIN                                           the connection stays
                                                                                      half-open (none)
    kill-rst    victim    it holds unread bytes, then kill -9: its   <leg>_reset     RST, or EOF (fin)
                          kernel sends RST
    idle        -         both peers fall silent on a listener with  idle_timeout    RST, or EOF (fin)
                          idle_timeout 2s (keepalive probes answered meanwhile)

A third of the drop, busy-drop, kill-fin and kill-rst connections are
half-closed before the fault (the other peer shut down writing, or for
busy-drop the victim, which is then still being sent to), so dead peers are
also found on legs kaproxy has sent its FIN on or no longer reads.  A
kill-fin on such a connection ends <other>_fin: the record names the first
FIN.

A reboot loses every TCP state of a host, so it cannot hit one connection:
a separate thread runs reboot rounds in two extra namespaces, one client
host and one server host of their own (lab.add_end), each round 1-3
connections through it, then the namespace is recreated (lab.reboot) and
every one of them must end <leg>_reset when the next probe meets the fresh
host's RST, while the slots' connections in the other namespaces go on.

Policies are short (keepalive idle 1s, interval 1s, count 2: a dead peer is
declared within 3s; 2s/1s/5 on a leg that is rebooted, so the host is back
before its last probe), teardown rst or fin at random per connection.

Before the run, a warm-up holds bytes in both directions of slots + 6
connections at once, so kaproxy's pipe pool holds as many pipes as the soak
will ever need; the baseline of descriptors and RSS is taken after it, and
after the run kaproxy must come back to it (lab.wait_back_to_baseline).
At the end: no record left unclaimed (exactly one per connection), all
"event":"close", /connections empty, only listening sockets left, and
/metrics counting the same connections and close reasons as the log.

The harness's own per-command log goes to soak.log in the lab directory
(kept, with the access log and kaproxy's stderr, when the run fails); the
console shows progress every 30s and one summary line.
"""
import math
import os
import random
import sys
import threading
import time
import traceback

import lab

LEGS = ("client", "upstream")
OTHER = {"client": "upstream", "upstream": "client"}

POLICY = (1, 1, 2)              # every leg of the slots' listeners: dead within 3s
BOUND = lab.worst_case_s(POLICY)
USER_TIMEOUT = BOUND            # user_timeout auto = idle + interval * count
REBOOT_POLICY = (2, 1, 5)       # the rebooted leg: probes 2, 3, .. 6s after its last segment
# The host must be back before a victim's last probe goes out.  Idle, each
# heard from its peer at most `idle` before the reboot began (answered
# probes), so that leaves interval x (count - 1) from its start.
REBOOT_IN_TIME = REBOOT_POLICY[1] * (REBOOT_POLICY[2] - 1) - 0.5
IDLE_TIMEOUT = 2
IO_T = 20                       # peer send/expect timeout, seconds
ANSWER_T = IO_T + 10            # waiting for a peer's answer
WARM_POLICY = (30, 10, 3)       # user timeout 60s: see listeners()
RSS_SLACK_KIB = 1024            # allocator slack; measured: 0 KiB over a 3-minute run

SLOT_PORT = 7100                # slot s: listeners 7100+10s+(0..3), server port 7100+10s
VARIANTS = (("r", "rst", False), ("f", "fin", False), ("ir", "rst", True), ("if", "fin", True))
WARM_PORT = 7050
# Reboot rounds: x is a client host, y a server host, each its own namespace.
X_IP, X_PROXY_IP = "10.77.5.2", "10.77.5.1"
Y_IP, Y_PROXY_IP = "10.77.6.2", "10.77.6.1"
X_PORT, Y_PORT = 7600, 7610     # listeners +0 (rst) and +1 (fin); servers on X_PORT, Y_PORT

SLOT_KINDS = [("transfer", None), ("transfer", None),
              ("half-close", "client"), ("half-close", "upstream"),
              ("drop", "client"), ("drop", "upstream"),
              ("busy-drop", "client"), ("busy-drop", "upstream"),
              ("kill-fin", "client"), ("kill-fin", "upstream"),
              ("kill-rst", "client"), ("kill-rst", "upstream"),
              ("idle", None)]
KIND_NAMES = sorted({k for k, _ in SLOT_KINDS} | {"reboot"})


def loguniform(rng, hi):
    """A size from 1 to hi, every order of magnitude as likely."""
    return max(1, int(math.exp(rng.uniform(0, math.log(hi)))))


# --- the console and the detail log ------------------------------------------------

class Output:
    """lab's per-command lines go to a file; say() goes to both."""

    def __init__(self, path):
        self.f = open(path, "a", buffering=1)
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.path = path

    def detail(self, msg):
        line = "[%8.3f] %s %s\n" % (time.monotonic() - self.t0,
                                    threading.current_thread().name, msg)
        with self.lock:
            self.f.write(line)

    def say(self, msg):
        self.detail(msg)
        print("[%7.1fs] %s" % (time.monotonic() - self.t0, msg), flush=True)

    def tail(self, n=150):
        with self.lock:
            self.f.flush()
            try:
                with open(self.path) as f:
                    return "".join(f.readlines()[-n:])
            except OSError as e:
                return "(%s)" % e


# --- access-log records, claimed once each ---------------------------------------

class Records:
    """The access log, shared by the threads: each connection claims the one
    record of its listener and client address; a second record for it stays
    unclaimed and fails the end check."""

    def __init__(self, access_log):
        self.log = access_log
        self.lock = threading.Lock()
        self.seen = 0
        self.pending = {}

    def _poll(self):
        self.log.poll()
        for r in self.log.records[self.seen:]:
            self.pending.setdefault((r["listener"], r["client"]), []).append(r)
        self.seen = len(self.log.records)

    def take(self, listener, client, timeout):
        def find():
            with self.lock:
                self._poll()
                got = self.pending.get((listener, client))
                return got.pop(0) if got else None
        return lab.wait_until(find, timeout, "the access-log record of %s from %s"
                              % (listener, client), interval=0.05)

    def open(self, listener, client):
        """No record yet for that connection."""
        with self.lock:
            self._poll()
            return not self.pending.get((listener, client))

    def unclaimed(self):
        with self.lock:
            self._poll()
            return [r for rs in self.pending.values() for r in rs]


# --- peers and connections -------------------------------------------------------

class End:
    """One peer.py process and which of its connections commands address."""

    def __init__(self, peer):
        self.peer = peer
        self.cur = None
        self.count = 0      # connections a client end has made

    def alive(self):
        return self.peer.alive()

    def select(self, conn):
        if conn != self.cur:
            r = self.peer.cmd("use %d" % conn, 10)
            if r.status != "OK":
                raise lab.Failure("%s: use %d answered %r" % (self.peer.name, conn, r.raw))
            self.cur = conn


class Flow:
    """One connection through kaproxy: the client end, the server end, the
    bytes each peer sent (what the record must count)."""

    def __init__(self, soak, n, kind, leg, listener, target, client_ip, cli, srv, victim_ns):
        self.soak, self.t = soak, soak.t
        self.n, self.kind, self.leg = n, kind, leg
        self.listener, self.target = listener, target
        self.ends = {"client": cli, "upstream": srv}
        self.ns = victim_ns      # {leg: lab role of that peer's namespace}
        self.sent = {"client": 0, "upstream": 0}
        r = cli.peer.cmd("connect %s 5" % target, 10)
        if r.status != "OK":
            raise lab.Failure("flow #%s: connect %s: %s" % (n, target, r.raw))
        self.cconn = cli.count
        cli.count += 1
        cli.cur = self.cconn
        self.cport = int(r["local"].rsplit(":", 1)[1])
        self.lport = int(target.rsplit(":", 1)[1])
        a = srv.peer.cmd("accept 5", 10)
        if a.status != "OK":
            raise lab.Failure("flow #%s: the server accepts nothing: %s" % (n, a.raw))
        self.sconn = srv.cur = int(a["conn"])
        self.kport = int(a["peer"].rsplit(":", 1)[1])
        self.sport = int(srv.peer.listen_port)
        self.client = "%s:%d" % (client_ip, self.cport)
        self.started = time.time()

    def __str__(self):
        return "#%s %s%s via %s (client %s)" % (self.n, self.kind,
                                                " " + self.leg if self.leg else "",
                                                self.listener, self.client)

    def conn(self, leg):
        return self.cconn if leg == "client" else self.sconn

    def submit(self, leg, line):
        end = self.ends[leg]
        end.select(self.conn(leg))
        end.peer.submit(line)

    def reply(self, leg, timeout=ANSWER_T):
        return self.ends[leg].peer.reply(timeout)

    def do(self, leg, line, timeout=ANSWER_T):
        self.submit(leg, line)
        return self.reply(leg, timeout)

    def ok(self, leg, line, timeout=ANSWER_T):
        r = self.do(leg, line, timeout)
        if r.status != "OK":
            raise lab.Failure("flow %s: %s peer: %r answered %r" % (self, leg, line, r.raw))
        return r

    def move(self, sizes):
        """sizes {leg: n}: each of those peers sends n bytes at the same time
        while the other reads them; every byte arrives, verified."""
        senders = [l for l in LEGS if sizes.get(l)]
        for l in senders:
            self.submit(l, "send %d %d" % (sizes[l], IO_T))
        for l in senders:
            self.submit(OTHER[l], "expect %d %d" % (sizes[l], IO_T))
        sent = {l: self.reply(l) for l in senders}
        got = {l: self.reply(OTHER[l]) for l in senders}
        for l in senders:
            s, g = sent[l], got[l]
            self.t.check(s.status == "OK" and g.status == "OK" and g["got"] == str(sizes[l])
                         and s["sha"] == g["sha"], "flow %s: %d bytes from the %s peer arrive "
                         "intact (%s / %s)" % (self, sizes[l], l, s, g))
            self.sent[l] += sizes[l]
            self.soak.count_bytes(sizes[l])

    def traffic(self, rng, steps):
        """steps rounds of one-way or two-way transfers of random sizes."""
        for _ in range(steps):
            mode = rng.choice(("client", "upstream", "both"))
            if mode == "both":
                self.move({l: loguniform(rng, 128 * 1024) for l in LEGS})
            else:
                self.move({mode: loguniform(rng, 1 << 20)})

    def expect_eof(self, leg, what):
        r = self.do(leg, "wait_close 10")
        self.t.check(r.status == "EOF" and r["extra"] == "0",
                     "flow %s: the %s peer gets an orderly EOF after every byte, %s (%s)"
                     % (self, leg, what, r))

    def still_open(self, what):
        self.t.check(self.soak.records.open(self.listener, self.client),
                     "flow %s: no record yet: %s" % (self, what))

    def record(self, timeout):
        return self.soak.records.take(self.listener, self.client, timeout)

    def check_record(self, rec, reason, teardown):
        self.t.check_closed(rec, reason, teardown, bytes_from_client=self.sent["client"],
                            bytes_to_client=self.sent["upstream"])
        self.soak.count_reason(reason, teardown)

    def other_sees(self, leg, r, teardown):
        """What the peer of leg saw when the other peer died, by teardown."""
        if teardown == "rst":
            ok = r.status == "RESET" and r.get("errno") == "ECONNRESET"
        else:
            ok = r.status == "EOF" and r["extra"] == "0"
        self.t.check(ok, "flow %s: the %s peer sees %s (%s)" % (
            self, leg, "a reset" if teardown == "rst" else "an orderly EOF (teardown fin)", r))

    def drop(self, leg):
        """DROP this connection's packets in leg's peer's namespace."""
        role = self.ns[leg]
        if leg == "client":
            return self.t.drop_flow(role, self.cport, self.lport)
        return self.t.drop_flow(role, self.sport, self.kport)

    def undrop(self, leg):
        role = self.ns[leg]
        if leg == "client":
            self.t.undrop_flow(role, self.cport, self.lport)
        else:
            self.t.undrop_flow(role, self.sport, self.kport)

    def proxy_tx_queue(self, leg):
        """Bytes kaproxy has sent on leg that its peer has not acknowledged."""
        if leg == "client":
            local, remote = self.target, self.client
        else:
            local = "%s:%d" % (self.soak.proxy_ip_towards[self.ns[leg]], self.kport)
            remote = "%s:%d" % (self.ends[leg].peer.listen_ip, self.sport)
        for s in self.t.proxy_sockets():
            if s["local"] == local and s["remote"] == remote:
                return s["tx_queue"]
        raise lab.Failure("flow %s: kaproxy has no socket %s <-> %s" % (self, local, remote))

    def rx_queue(self, leg):
        """Bytes leg's peer has received on this connection and not read."""
        p = self.ends[leg].peer
        if leg == "client":
            local, remote = self.client, self.target
        else:
            local = "%s:%d" % (p.listen_ip, self.sport)
            remote = "%s:%d" % (self.soak.proxy_ip_towards[self.ns[leg]], self.kport)
        for s in lab.proc_tcp(p.pid):
            if s["local"] == local and s["remote"] == remote:
                return s["rx_queue"]
        return None


# --- what each kind does and expects -----------------------------------------------

def run_transfer(f, rng, teardown):
    f.traffic(rng, rng.randint(1, 4))
    closer = rng.choice(LEGS)
    f.ok(closer, "close")
    f.expect_eof(OTHER[closer], "then the connection is half-open")
    f.still_open("the %s peer has not closed yet" % OTHER[closer])
    f.ok(OTHER[closer], "close")
    f.check_record(f.record(10), "%s_fin" % closer, "none")


def run_half_close(f, rng, teardown):
    a, b = f.leg, OTHER[f.leg]
    f.traffic(rng, rng.randint(0, 2))
    # a shuts down writing while b's bytes are on their way to it.
    n = loguniform(rng, 1 << 20)
    f.submit(b, "send %d %d" % (n, IO_T))
    f.submit(a, "shutdown_wr")
    f.submit(a, "expect %d %d" % (n, IO_T))
    s, sh, g = f.reply(b), f.reply(a), f.reply(a)
    f.t.check(s.status == sh.status == g.status == "OK" and s["sha"] == g["sha"],
              "flow %s: %d bytes from the %s peer arrive intact across the %s peer's shutdown "
              "(%s / %s / %s)" % (f, n, b, a, s, sh, g))
    f.sent[b] += n
    f.soak.count_bytes(n)
    f.expect_eof(b, "the %s peer's FIN" % a)
    for _ in range(rng.randint(1, 3)):
        f.move({b: loguniform(rng, 1 << 20)})
    f.still_open("half-closed, the %s peer still sending" % b)
    f.ok(b, "close")
    f.expect_eof(a, "after the half-close")
    f.check_record(f.record(10), "%s_fin" % a, "none")


def shut_first(f, who, why):
    """who shuts down writing; the other peer gets its FIN after every byte.
    Dead-peer detection then runs on a half-closed connection: on a leg
    kaproxy has sent its FIN on (FIN_WAIT2) or no longer reads (CLOSE_WAIT)."""
    f.ok(who, "shutdown_wr")
    f.expect_eof(OTHER[who], why)
    f.soak.count_half(f.kind, who)


def run_drop(f, rng, teardown, busy=False):
    victim, other = f.leg, OTHER[f.leg]
    f.traffic(rng, rng.randint(1, 3))
    # A third of them half-closed first: the other peer when idle (kaproxy's
    # victim leg in FIN_WAIT2), the victim when busy (in CLOSE_WAIT, still
    # being sent to).
    half = rng.random() < 1 / 3
    if half:
        shut_first(f, victim if busy else other, "before the fault")
    # Idle means everything kaproxy sent the victim is acknowledged: else
    # the DROP would catch a delayed ACK and it would be busy-drop.
    lab.wait_until(lambda: f.proxy_tx_queue(victim) == 0, 10,
                   "flow %s: the %s peer to acknowledge all it got" % (f, victim))
    dropped = f.drop(victim)
    f.soak.count_fault(f.kind, victim)
    n = 0
    if busy:
        # Fits kaproxy's pipe: it reads all of it, and it stays in flight.
        n = loguniform(rng, 32 * 1024)
        f.ok(other, "send %d %d" % (n, IO_T))
        f.sent[other] += n
        sent_at = time.time()
    if half and busy:
        # The other peer has read the victim's FIN: recv says EOF whatever
        # follows, so a send shows whether it was reset.
        rec = f.record(BOUND + 15)
        if teardown == "rst":
            r = f.do(other, "send 1 5")
            f.t.check(r.status == "ERR" and r["sent"] == "0" and
                      r["errno"] in ("EPIPE", "ECONNRESET"),
                      "flow %s: the %s peer, half-closed, is reset (%s)" % (f, other, r))
    else:
        f.submit(other, "wait_close %d" % (BOUND + 15))
        rec = f.record(BOUND + 15)
        f.other_sees(other, f.reply(other), teardown)
    f.check_record(rec, "%s_timeout" % victim, teardown)
    dead = rec["%s_tcp" % victim]
    if busy:
        f.t.check(dead["retrans"] >= 1 and rec["detect_ms"] >= USER_TIMEOUT * 1000 - 100,
                  "flow %s: found dead by retransmissions at the user timeout %ds (retrans %d, "
                  "detect_ms %d)" % (f, USER_TIMEOUT, dead["retrans"], rec["detect_ms"]))
        f.soak.count_latency(f.kind, rec["_seen"] - sent_at, USER_TIMEOUT)
    else:
        f.t.check(dead["probes"] >= 1 and BOUND * 1000 - 100 <= rec["detect_ms"]
                  <= (BOUND + lab.SLACK) * 1000,
                  "flow %s: found dead by unanswered probes at idle + interval x count = %ds "
                  "(+%.1fs slack; probes %d, detect_ms %d)"
                  % (f, BOUND, lab.SLACK, dead["probes"], rec["detect_ms"]))
        f.soak.count_latency(f.kind, rec["_seen"] - dropped, BOUND)
    f.ok(other, "close")
    f.undrop(victim)
    f.ok(victim, "close")


def run_busy_drop(f, rng, teardown):
    run_drop(f, rng, teardown, busy=True)


def run_kill_fin(f, rng, teardown):
    victim, other = f.leg, OTHER[f.leg]
    f.traffic(rng, rng.randint(1, 3))
    half = rng.random() < 1 / 3
    if half:
        shut_first(f, other, "before the victim's last bytes")
    # It has read everything, so its kernel closes with FIN after these.
    n = loguniform(rng, 256 * 1024)
    f.ok(victim, "send %d %d" % (n, IO_T))
    f.sent[victim] += n
    f.soak.kill9(f.ends[victim])
    f.soak.count_fault(f.kind, victim)
    r = f.do(other, "expect %d %d" % (n, IO_T))
    f.t.check(r.status == "OK", "flow %s: the %s peer gets all %d bytes the killed peer sent (%s)"
              % (f, other, n, r))
    f.soak.count_bytes(n)
    f.expect_eof(other, "forwarded from the killed peer")
    if not half:
        f.still_open("half-open until the %s peer closes" % other)
    f.ok(other, "close")
    # Both peers closed in order; the record names the first FIN.
    f.check_record(f.record(10), "%s_fin" % (other if half else victim), "none")


def run_kill_rst(f, rng, teardown):
    victim, other = f.leg, OTHER[f.leg]
    f.traffic(rng, rng.randint(1, 3))
    # Bytes the victim never reads: closing with them unread sends RST.
    n = loguniform(rng, 32 * 1024)
    f.ok(other, "send %d %d" % (n, IO_T))
    f.sent[other] += n
    q = lab.wait_until(lambda: f.rx_queue(victim) == n and n, 10,
                       "flow %s: %d unread bytes at the %s peer" % (f, n, victim))
    f.t.check(q == n, "flow %s: the %s peer holds %d unread bytes" % (f, victim, n))
    if rng.random() < 1 / 3:
        # Half-closed after them; the victim does not read, the FIN waits.
        f.ok(other, "shutdown_wr")
        lab.wait_until(lambda: f.proxy_tx_queue(victim) == 0, 10,
                       "flow %s: the %s peer to acknowledge the FIN" % (f, victim))
        f.soak.count_half(f.kind, other)
    f.soak.kill9(f.ends[victim])
    f.soak.count_fault(f.kind, victim)
    r = f.do(other, "wait_close 10")
    rec = f.record(10)
    f.check_record(rec, "%s_reset" % victim, teardown)
    f.other_sees(other, r, teardown)
    f.ok(other, "close")


def run_idle(f, rng, teardown):
    f.traffic(rng, rng.randint(1, 3))
    quiet = time.time()
    for leg in LEGS:
        f.submit(leg, "wait_close %d" % (IDLE_TIMEOUT + 15))
    rec = f.record(IDLE_TIMEOUT + 15)
    answers = {leg: f.reply(leg) for leg in LEGS}
    f.check_record(rec, "idle_timeout", teardown)
    for leg in LEGS:
        f.other_sees(leg, answers[leg], teardown)
    f.t.check(rec["_seen"] - quiet >= IDLE_TIMEOUT - 0.5,
              "flow %s: idle_timeout %ds, not earlier (%.2fs after the last byte), though "
              "keepalive probes were answered meanwhile" % (f, IDLE_TIMEOUT, rec["_seen"] - quiet))
    f.soak.count_latency("idle", rec["_seen"] - quiet, IDLE_TIMEOUT)
    for leg in LEGS:
        f.ok(leg, "close")


RUN = {"transfer": run_transfer, "half-close": run_half_close, "drop": run_drop,
       "busy-drop": run_busy_drop, "kill-fin": run_kill_fin, "kill-rst": run_kill_rst,
       "idle": run_idle}


# --- the soak ---------------------------------------------------------------------

class Soak:
    def __init__(self, t, args):
        self.t, self.args = t, args
        self.seed = args.seed
        self.slots = args.slots
        self.kinds = args.kinds
        self.lock = threading.Lock()
        self.spawn_lock = threading.Lock()
        self.stop = threading.Event()
        self.errors = []
        self.n = 0
        self.numbers = {}
        self.deck = []
        self.deck_rng = random.Random("%d:deck" % self.seed)
        self.flows = {}          # kind -> {leg: count}
        self.faults = {}         # kind -> {leg: count}
        self.half = {}           # "kind, who shut first" -> faults on half-closed connections
        self.reasons = {}        # (close_reason, teardown) -> count
        self.per_listener = {}   # listener -> connections made
        self.latency = {}        # kind -> (count, max excess over its bound)
        self.bytes = 0
        self.rounds = 0
        self.reboot_took = 0.0   # the longest reboot, seconds
        self.spawned = 0
        self.records = Records(t.access_log)
        self.proxy_ip_towards = {"server": lab.PROXY_SERVER_IP, "yserver": Y_PROXY_IP}

    # counters
    def count_bytes(self, n):
        with self.lock:
            self.bytes += n

    def count_fault(self, kind, leg):
        with self.lock:
            self.faults.setdefault(kind, {}).setdefault(leg, 0)
            self.faults[kind][leg] += 1

    def count_half(self, kind, who):
        with self.lock:
            k = "%s, %s shut first" % (kind, who)
            self.half[k] = self.half.get(k, 0) + 1

    def count_reason(self, reason, teardown):
        with self.lock:
            k = (reason, teardown)
            self.reasons[k] = self.reasons.get(k, 0) + 1

    def count_flow(self, f):
        with self.lock:
            d = self.flows.setdefault(f.kind, {})
            d[f.leg or "-"] = d.get(f.leg or "-", 0) + 1
            self.per_listener[f.listener] = self.per_listener.get(f.listener, 0) + 1

    def count_latency(self, kind, seen, bound):
        with self.lock:
            n, worst = self.latency.get(kind, (0, -1e9))
            self.latency[kind] = (n + 1, max(worst, seen - bound))

    # plans
    def next_plan(self):
        """(flow number, kind, leg), from shuffled decks of every slot kind:
        with one seed, plan #N is always the same (which slot runs it is
        up to timing)."""
        with self.lock:
            if not self.deck:
                self.deck = [k for k in SLOT_KINDS if k[0] in self.kinds]
                self.deck_rng.shuffle(self.deck)
            self.n += 1
            return ("%d" % self.n,) + self.deck.pop()

    def number(self, series):
        """The next flow number of a series of its own (r: reboot rounds,
        w: warm-up), so that the slots' numbering does not depend on them."""
        with self.lock:
            self.numbers[series] = self.numbers.get(series, 0) + 1
            return "%s%d" % (series, self.numbers[series])

    # processes
    def peer(self, role, name, listen=None):
        with self.lock:
            self.spawned += 1
            name = "%s-%d" % (name, self.spawned)
        with self.spawn_lock:
            p = self.t.peer(role, name, listen=listen, backlog=8)
        p.listen_port = listen.rsplit(":", 1)[1] if listen else None
        p.listen_ip = listen.rsplit(":", 1)[0] if listen else None
        return End(p)

    def kill9(self, end):
        end.peer.kill9()

    def fail(self, what):
        with self.lock:
            self.errors.append(what)
        self.stop.set()

    def running(self):
        return not self.stop.is_set() and time.monotonic() < self.deadline


def listeners(slots):
    out = {}
    for s in range(slots):
        base = SLOT_PORT + 10 * s
        for i, (tag, teardown, idle) in enumerate(VARIANTS):
            keys = lab.listener(listen="%s:%d" % (lab.PROXY_CLIENT_IP, base + i),
                                upstream="%s:%d" % (lab.SERVER_IP, base),
                                client=POLICY, upstream_policy=POLICY, teardown=teardown)
            if idle:
                keys["idle_timeout"] = "%ds" % IDLE_TIMEOUT
            out["s%d%s" % (s, tag)] = keys
    for i, teardown in enumerate(("rst", "fin")):
        out["x%s" % teardown[0]] = lab.listener(
            listen="%s:%d" % (X_PROXY_IP, X_PORT + i), upstream="%s:%d" % (lab.SERVER_IP, X_PORT),
            client=REBOOT_POLICY, upstream_policy=POLICY, teardown=teardown)
        out["y%s" % teardown[0]] = lab.listener(
            listen="%s:%d" % (lab.PROXY_CLIENT_IP, Y_PORT + i), upstream="%s:%d" % (Y_IP, Y_PORT),
            client=POLICY, upstream_policy=REBOOT_POLICY, teardown=teardown)
    # The warm-up holds zero windows for many seconds: a user timeout of 60s,
    # so that Linux does not abort them (tcp(7), TCP_USER_TIMEOUT).
    out["warm"] = lab.listener(listen="%s:%d" % (lab.PROXY_CLIENT_IP, WARM_PORT),
                               upstream="%s:%d" % (lab.SERVER_IP, WARM_PORT),
                               client=WARM_POLICY, upstream_policy=WARM_POLICY)
    return out


def slot_loop(soak, slot):
    t = soak.t
    base = SLOT_PORT + 10 * slot
    cli = srv = None
    while soak.running():
        n, kind, leg = soak.next_plan()
        rng = random.Random("%d:%s" % (soak.seed, n))
        teardown = rng.choice(("rst", "fin"))
        variant = ("i" if kind == "idle" else "") + teardown[0]
        if cli is None or not cli.alive():
            cli = soak.peer("client", "s%d-client" % slot)
        if srv is None or not srv.alive():
            srv = soak.peer("server", "s%d-server" % slot, listen="%s:%d" % (lab.SERVER_IP, base))
        port = base + [v[0] for v in VARIANTS].index(variant)
        f = Flow(soak, n, kind, leg, "s%d%s" % (slot, variant),
                 "%s:%d" % (lab.PROXY_CLIENT_IP, port), lab.CLIENT_IP, cli, srv,
                 {"client": "client", "upstream": "server"})
        lab.log("flow %s starts (teardown %s)" % (f, teardown))
        try:
            RUN[kind](f, rng, teardown)
        except lab.Failure as e:
            raise lab.Failure("flow %s, teardown %s: %s" % (f, teardown, e))
        soak.count_flow(f)
        lab.log("flow %s done" % f)


def reboot_loop(soak):
    """Rounds of 1-3 connections whose peer on one leg lives in a host of its
    own, which is then rebooted."""
    t = soak.t
    rng = random.Random("%d:reboot" % soak.seed)
    x_srv = y_cli = None
    first = rng.randrange(2)
    while soak.running():
        soak.rounds += 1
        leg = LEGS[(first + soak.rounds) % 2]   # alternating: both legs even in a short run
        k = rng.randint(1, 3)
        if leg == "client":
            if x_srv is None or not x_srv.alive():
                x_srv = soak.peer("server", "x-server", listen="%s:%d" % (lab.SERVER_IP, X_PORT))
            victim_end = soak.peer("xclient", "x-client")
            cli, srv, role, client_ip = victim_end, x_srv, "xclient", X_IP
            prefix, target_ip, port = "x", X_PROXY_IP, X_PORT
            ns = {"client": "xclient", "upstream": "server"}
        else:
            if y_cli is None or not y_cli.alive():
                y_cli = soak.peer("client", "y-client")
            victim_end = soak.peer("yserver", "y-server", listen="%s:%d" % (Y_IP, Y_PORT))
            cli, srv, role, client_ip = y_cli, victim_end, "yserver", lab.CLIENT_IP
            prefix, target_ip, port = "y", lab.PROXY_CLIENT_IP, Y_PORT
            ns = {"client": "client", "upstream": "yserver"}
        flows = []
        for _ in range(k):
            n = soak.number("r")
            frng = random.Random("%d:%s" % (soak.seed, n))
            teardown = frng.choice(("rst", "fin"))
            f = Flow(soak, n, "reboot", leg, "%s%s" % (prefix, teardown[0]),
                     "%s:%d" % (target_ip, port + (teardown == "fin")), client_ip, cli, srv, ns)
            f.teardown = teardown
            flows.append(f)
            f.traffic(frng, frng.randint(1, 2))
        began = time.time()
        t.reboot(role)
        back = time.time()
        with soak.lock:
            soak.reboot_took = max(soak.reboot_took, back - began)
        for f in flows:
            soak.count_fault("reboot", leg)
        if back - began > REBOOT_IN_TIME:
            raise lab.Failure("reboot round %d: the host took %.1fs to come back, past the %.1fs "
                              "its policy leaves before the last probe (machine too slow?)"
                              % (soak.rounds, back - began, REBOOT_IN_TIME))
        other = OTHER[leg]
        for f in flows:
            try:
                r = f.do(other, "wait_close %d" % (sum(REBOOT_POLICY) + 15))
                rec = f.record(10)
                f.check_record(rec, "%s_reset" % leg, f.teardown)
                f.other_sees(other, r, f.teardown)
                f.ok(other, "close")
            except lab.Failure as e:
                raise lab.Failure("reboot round %d, flow %s, teardown %s: %s"
                                  % (soak.rounds, f, f.teardown, e))
            soak.count_latency("reboot", rec["_seen"] - back, REBOOT_POLICY[0])
            soak.count_flow(f)


def thread_main(soak, fn, *args):
    try:
        fn(soak, *args)
    except lab.Failure as e:
        soak.fail(str(e))
    except Exception:
        soak.fail("harness error:\n" + traceback.format_exc())


def warm_up(soak, px, count):
    """count connections, each with bytes held in both directions at once
    (every peer sends until it blocks, nobody reads), so kaproxy's pipe pool
    afterwards holds what the soak's concurrency can need; then all drain,
    verified, and close."""
    t = soak.t
    cli = soak.peer("client", "warm-client")
    srv = soak.peer("server", "warm-server", listen="%s:%d" % (lab.SERVER_IP, WARM_PORT))
    flows = [Flow(soak, soak.number("w"), "warm-up", None, "warm",
                  "%s:%d" % (lab.PROXY_CLIENT_IP, WARM_PORT), lab.CLIENT_IP, cli, srv,
                  {"client": "client", "upstream": "server"}) for _ in range(count)]
    held = {}
    for f in flows:
        for leg in LEGS:
            f.ok(leg, "rcvbuf 4096")
    for leg in LEGS:
        for f in flows:
            r = f.do(leg, "send %d 0.2" % (64 << 20))
            t.check(r.status == "ERR" and r.get("errno") == "TIMEOUT",
                    "warm-up %s: the %s peer's send blocks with nobody reading (%s)" % (f, leg, r))
            held[(f.n, leg)] = int(r["sent"])
            f.sent[leg] += int(r["sent"])
    want = 4 * count
    lab.wait_until(lambda: lab.proc_usage(px.pid)["pipe_fds"] >= want, 10,
                   "kaproxy to hold %d pipe descriptors" % want)
    soak.out.say("warm-up: %d connections hold bytes both ways: %d pipe descriptors in kaproxy"
                 % (count, lab.proc_usage(px.pid)["pipe_fds"]))
    for f in flows:
        for leg in LEGS:
            # A 4 KiB window would drain at one delayed ACK per window.
            f.ok(leg, "rcvbuf %d" % (1 << 20))
    for f in flows:
        for leg in LEGS:
            n = held[(f.n, OTHER[leg])]
            r = f.do(leg, "expect %d %d" % (n, IO_T))
            t.check(r.status == "OK", "warm-up %s: the %s peer reads all %d bytes (%s)"
                    % (f, leg, n, r))
            soak.count_bytes(n)
        f.ok("client", "close")
        f.expect_eof("upstream", "warm-up")
        f.ok("upstream", "close")
        f.check_record(f.record(10), "client_fin", "none")
        soak.count_flow(f)
    for e in (cli, srv):
        e.peer.stop()


def parse(ap):
    env = os.environ.get("KAPROXY_SOAK_MINUTES")
    ap.add_argument("--minutes", type=float, default=float(env) if env else 3.0,
                    help="how long new connections are started (default $KAPROXY_SOAK_MINUTES, "
                         "else 3)")
    ap.add_argument("--seed", type=int, default=None, help="replay a run (printed at the start)")
    ap.add_argument("--slots", type=int, default=6, help="connections at once besides the "
                    "reboot rounds (default 6)")
    ap.add_argument("--kinds", default=",".join(KIND_NAMES),
                    help="comma-separated subset of: " + ", ".join(KIND_NAMES))


def main(t):
    args = t.args
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "big")
    args.kinds = set(k for k in args.kinds.split(",") if k)
    unknown = args.kinds - set(KIND_NAMES)
    if unknown:
        raise lab.Failure("unknown kinds %s (known: %s)" % (sorted(unknown), KIND_NAMES))
    soak = Soak(t, args)
    out = soak.out = Output(os.path.join(t.dir, "soak.log"))
    lab.log = out.detail
    replay = "python3 %s --kaproxy %s --seed %d --minutes %g --slots %d%s" % (
        sys.argv[0], args.kaproxy, args.seed, args.minutes, args.slots,
        "" if args.kinds == set(KIND_NAMES) else " --kinds " + ",".join(sorted(args.kinds)))
    out.say("seed %d; replay: %s" % (args.seed, replay))
    out.say("detail log: %s" % out.path)
    started = time.monotonic()

    t.add_end("xclient", "x", X_IP, X_PROXY_IP)
    t.add_end("yserver", "y", Y_IP, Y_PROXY_IP)
    px = t.start_kaproxy(listeners(args.slots), {"admin_listen": lab.ADMIN_LISTEN})
    admin = lab.Admin(t)
    warm_up(soak, px, args.slots + 6)
    lab.wait_until(lambda: not [s for s in t.proxy_sockets(px) if s["state"] != "LISTEN"],
                   10, "the warm-up connections to leave kaproxy")
    base = lab.proc_usage(px.pid)
    out.say("baseline after warm-up: %d descriptors (%d of them pipes), RSS %d KiB"
            % (base["fds"], lab.proc_usage(px.pid)["pipe_fds"], base["rss_kib"]))

    soak.deadline = time.monotonic() + args.minutes * 60
    threads = [threading.Thread(target=thread_main, args=(soak, slot_loop, s),
                                name="slot%d" % s, daemon=True) for s in range(args.slots)]
    if "reboot" in args.kinds:
        threads.append(threading.Thread(target=thread_main, args=(soak, reboot_loop),
                                        name="reboot", daemon=True))
    for th in threads:
        th.start()
    last = time.monotonic()
    hard_end = soak.deadline + 120
    while any(th.is_alive() for th in threads):
        if time.monotonic() > hard_end:
            raise lab.Failure("threads still running 120s after the deadline: %s"
                              % [th.name for th in threads if th.is_alive()])
        for th in threads:
            th.join(0.5)
        if time.monotonic() - last >= 30:
            last = time.monotonic()
            with soak.lock:
                done = sum(sum(d.values()) for d in soak.flows.values())
                nf = sum(sum(d.values()) for d in soak.faults.values())
            out.say("%d connections ended as expected, %d faults, %.1f MB verified, "
                    "kaproxy %s" % (done, nf, soak.bytes / 1e6, lab.proc_usage(px.pid)))
    if soak.errors:
        out.say("FAILED (seed %d; replay: %s):\n%s" % (args.seed, replay,
                                                      "\n".join(soak.errors)))
        print("---- last lines of %s\n%s" % (out.path, out.tail()), flush=True)
        raise lab.Failure(soak.errors[0].splitlines()[0])

    # Every kind ran, on every leg it has.
    for kind, leg in SLOT_KINDS + [("reboot", "client"), ("reboot", "upstream")]:
        if kind in args.kinds:
            t.check(soak.flows.get(kind, {}).get(leg or "-", 0) > 0,
                    "kind %s%s ran at least once" % (kind, " on the %s leg" % leg if leg else ""))

    # kaproxy as it began.
    after = lab.wait_back_to_baseline(px.pid, base, RSS_SLACK_KIB, timeout=20)
    left = [s for s in t.proxy_sockets(px) if s["state"] != "LISTEN"]
    t.check(not left, "no socket of kaproxy's but its listeners (%s)" % left[:5])
    conns = admin.json("/connections?limit=1000")
    t.check(conns == [], "/connections is empty (%d left: %s)" % (len(conns), conns[:3]))
    unclaimed = soak.records.unclaimed()
    t.check(not unclaimed, "exactly one record per connection: %d records nobody claimed (%s)"
            % (len(unclaimed), unclaimed[:3]))
    t.check(not t.access_log.bad, "every access-log line is a JSON object (%s)"
            % t.access_log.bad[:3])
    records = t.access_log.records
    t.check(all(r["event"] == "close" for r in records), "every record is an event close")
    made = sum(soak.per_listener.values())
    t.check(len(records) == made, "%d records for %d connections" % (len(records), made))
    m = admin.metrics()
    for name, count in soak.per_listener.items():
        t.check(m['kaproxy_connections_total{listener="%s"}' % name] == count,
                "/metrics: listener %s accepted %d connections" % (name, count))
        t.check(m['kaproxy_connections_active{listener="%s"}' % name] == 0,
                "/metrics: listener %s has none open" % name)
    closed = {}
    for r in records:
        k = (r["listener"], r["close_reason"])
        closed[k] = closed.get(k, 0) + 1
    for (name, reason), count in closed.items():
        t.check(m['kaproxy_connections_closed_total{listener="%s",reason="%s"}' % (name, reason)]
                == count, "/metrics: %d closed on %s as %s" % (count, name, reason))
    t.check(px.alive(), "kaproxy still runs")

    duration = time.monotonic() - started
    faults = " ".join("%s=%s" % (k, "/".join("%s:%d" % (l, n) for l, n in sorted(d.items())))
                      for k, d in sorted(soak.faults.items()))
    kinds = " ".join("%s=%d" % (k, sum(d.values())) for k, d in sorted(soak.flows.items()))
    reasons = " ".join("%s/%s=%d" % (r, td, n) for (r, td), n in sorted(soak.reasons.items()))
    lat = " ".join("%s=%d:%+.2fs" % (k, n, w) for k, (n, w) in sorted(soak.latency.items()))
    out.say("per kind: %s" % kinds)
    out.say("close_reason/teardown: %s" % reasons)
    out.say("faults on half-closed connections: %s" % ", ".join(
        "%s: %d" % kv for kv in sorted(soak.half.items())))
    out.say("observed end - fault, worst excess over the bound, per kind: %s; longest reboot "
            "%.2fs (%.1fs allowed)" % (lat, soak.reboot_took, REBOOT_IN_TIME))
    out.say("SUMMARY seed=%d slots=%d connections=%d faults[%s] reboot_rounds=%d "
            "bytes_verified=%d duration=%.1fs fds %d->%d rss_kib %d->%d"
            % (args.seed, args.slots, made, faults, soak.rounds, soak.bytes, duration,
               base["fds"], after["fds"], base["rss_kib"], after["rss_kib"]))


if __name__ == "__main__":
    lab.run(main, __doc__, extra_args=parse, record=False)
