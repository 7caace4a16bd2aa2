#!/usr/bin/env python3
"""Reloads and signals under traffic change only what they should: every byte arrives, no live connection is closed, every connection gets exactly one access-log line, in the file that was current when it closed, and kaproxy holds no more descriptors afterwards than before.

Two workers, an admin endpoint, four listeners each carrying one long stream
(rounds of CHUNK bytes client -> server, then server -> client, each round
checked byte for byte against peer.py's pattern and by checksum) and a fifth
("short") for connections that open, exchange and close between signals.
The client and server links are rate limited (tbf), so bytes are in flight at
every signal while the peers stay cheap on the CPU.

Ten SIGHUPs, each awaited in kaproxy's log (reloaded / reload failed), each
followed by a short connection whose line is looked for in the current file,
by a round of every stream, and by a descriptor count:

  1 keepalive policy changed        6 access_log an unwritable path: refused
  2 access_log moved to a new file  7 access_log back to the first file
  3 listener "extra" added, used    8 keepalive policy changed again
  4 a broken file: refused          9 nothing changed
  5 "extra" removed (its live       10 access_log moved to a third file
    connection carries on)

Descriptors other than pipes (files, sockets, epoll and the like) must be
exactly the baseline plus the listeners and connections open at that moment:
a log file kept open per reload shows as one more file each time the path
changes.  Pipes are not counted exactly: each worker keeps up to 64 empty
pipes for reuse (PUMP_POOL_PIPES), so their number follows the peak of
concurrent transfers, not the reloads.

Then a storm: SIGHUP and SIGUSR1 alternating, each sent as soon as kaproxy
has taken the one before of its kind (sooner, the kernel merges them), at
least 50 and on until three short connections have opened and closed in the
middle of it, while the streams flow; then a
reload that adds a listener, awaited (so the storm is over), and one that
removes it.  Both kinds must have been handled, no reload may fail, and
nothing may change: streams intact, lines exact, the same descriptors,
/healthz 200, and a new connection is served.
"""
import collections
import os
import signal
import threading
import time

import lab

WORKERS = 2
STREAMS = 4
CHUNK = 512 * 1024          # bytes per direction per round of a stream
RATE = "200mbit"            # tbf on the client's and the server's link
STORM = 50                  # signals in the storm, at least
STORM_CHURN = 3             # short connections that open and close during it, at least
# Signals go out as fast as kaproxy takes them, for as long as it takes the
# short connections to open and close (each takes tens of ms under the
# storm): a data path starved for this long fails.
STORM_MAX_S = 10.0
SHORT_BYTES = 2000
ROUND_TIMEOUT = 20          # seconds for one direction of one round
POOL_PIPES = 64             # PUMP_POOL_PIPES: empty pipes a worker keeps for reuse

P = lab.PROXY_CLIENT_IP
S = lab.SERVER_IP
SHORT_LISTEN, SHORT_SERVER = "%s:7005" % P, "%s:7105" % S
EXTRA_LISTEN = "%s:7006" % P
BARRIER_LISTEN = "%s:7007" % P


class Stream:
    """One long connection through its own listener and server, carrying
    rounds until stopped, from a thread of its own."""

    def __init__(self, t, k):
        self.name = "s%d" % k
        self.listen = "%s:%d" % (P, 7000 + k)
        self.srv = t.server(listen="%s:%d" % (S, 7100 + k), name="server-" + self.name)
        self.cli = t.client("client-" + self.name)
        self.local = self.cli.ok("connect %s 5" % self.listen)["local"]
        self.srv_conn = int(self.srv.ok("accept 5")["conn"])
        self.cli.quiet = self.srv.quiet = True
        self.c2s = self.s2c = 0
        self.rounds = 0
        self.error = None
        self.stop = threading.Event()
        self.progress = threading.Condition()
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def _one_way(self, src, dst, what):
        src.submit("send %d %d" % (CHUNK, ROUND_TIMEOUT))
        dst.submit("expect %d %d" % (CHUNK, ROUND_TIMEOUT))
        sent, got = src.reply(ROUND_TIMEOUT + 5), dst.reply(ROUND_TIMEOUT + 5)
        if not (sent.status == got.status == "OK" and sent["sha"] == got["sha"]):
            raise lab.Failure("stream %s, %s, round %d: sent %r, received %r"
                              % (self.name, what, self.rounds + 1, sent.raw, got.raw))

    def _run(self):
        try:
            while not self.stop.is_set():
                self._one_way(self.cli, self.srv, "client -> server")
                self.c2s += CHUNK
                self._one_way(self.srv, self.cli, "server -> client")
                self.s2c += CHUNK
                with self.progress:
                    self.rounds += 1
                    self.progress.notify_all()
        except BaseException as e:      # reported by the main thread
            self.error = e
            with self.progress:
                self.progress.notify_all()

    def close(self):
        """The client closes first; the server closes once it has seen that."""
        close_in_order(self.cli, self.srv)

    def wait_round(self, after, timeout):
        """Wait until a round past `after` has completed; the round count."""
        with self.progress:
            self.progress.wait_for(lambda: self.rounds > after or self.error is not None
                                   or not self.thread.is_alive(), timeout)
            if self.error is not None:
                raise self.error
            if self.rounds <= after:
                raise lab.Failure("stream %s: no round completed within %.0fs (rounds %d)"
                                  % (self.name, timeout, self.rounds))
            return self.rounds

    def finish(self, timeout):
        self.stop.set()
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise lab.Failure("stream %s: its last round did not end within %.0fs"
                              % (self.name, timeout))
        if self.error is not None:
            raise self.error
        self.cli.quiet = self.srv.quiet = False


def close_in_order(cli, srv):
    """cli closes; srv, once the FIN has reached it (the client's link is
    queued behind the streams' bytes), closes too: close_reason client_fin."""
    cli.ok("close")
    r = srv.cmd("wait_close 10", timeout=15)
    if r.status != "EOF" or r["extra"] != "0":
        raise lab.Failure("%s: the client's close arrives as EOF after every byte (%s)"
                          % (srv.name, r.raw))
    srv.ok("close")


class Logs:
    """Every access-log file kaproxy is told to write, and which connection
    closed while which file was current."""

    def __init__(self, t):
        self.t = t
        self.files = {}
        self.expected = {}      # (listener, client) -> path current when it closed
        self.unchecked = {}     # (listener, client) -> its exact figures, line not seen yet
        self.current = None

    def use(self, path):
        self.current = path
        if path not in self.files:
            self.files[path] = lab.AccessLog(path)

    def expect(self, listener, client, **exact):
        """The connection (listener, client) has closed: its line, with the
        figures in exact, must be in the current file (checked at the end)."""
        self.expected[(listener, client)] = self.current
        self.unchecked[(listener, client)] = exact

    def closed(self, listener, client, timeout=10):
        """The connection (listener, client) has closed: its line must appear in
        the current file; returns it."""
        self.expected[(listener, client)] = self.current
        return self.files[self.current].wait(
            lambda r: r["listener"] == listener and r["client"] == client, timeout,
            "the line of %s %s in %s" % (listener, client, os.path.basename(self.current)))

    def none_for(self, listener, client):
        for log in self.files.values():
            if log.closed(listener, client):
                return False
        return True

    def check_exactly_one_each(self):
        """Each connection: one line in all the files together, in the file
        expected; and no line of a connection this scenario did not make."""
        where = collections.defaultdict(list)
        lines = {}
        for path, log in self.files.items():
            log.poll()
            self.t.check(not log.bad, "%s: every line is one JSON object (bad: %r)"
                         % (os.path.basename(path), log.bad[:3]))
            for r in log.records:
                where[(r["listener"], r["client"])].append(path)
                lines[(r["listener"], r["client"])] = r
        wrong = {k: (v, self.expected.get(k)) for k, v in where.items()
                 if v != [self.expected.get(k)]}
        missing = [k for k in self.expected if k not in where]
        counts = {os.path.basename(p): len(l.records) for p, l in self.files.items()}
        self.t.check(not wrong and not missing,
                     "each of the %d connections has exactly one line, in the file current "
                     "when it closed (lines per file %s; wrong %r, missing %r)"
                     % (len(self.expected), counts, wrong, missing))
        bad = {k: lines[k] for k, exact in self.unchecked.items()
               if lines[k]["close_reason"] != "client_fin" or lines[k]["event"] != "close"
               or any(lines[k][f] != v for f, v in exact.items())}
        self.t.check(not bad, "the %d lines not awaited one by one say client_fin and the "
                     "exact byte counts (wrong: %r)" % (len(self.unchecked), bad))


def main(t):
    for role in ("client", "server"):
        t.run(role, ["tc", "qdisc", "add", "dev", t.veth[role][0], "root", "tbf",
                     "rate", RATE, "burst", "64kb", "latency", "50ms"])
    lab.log("client and server links limited to %s each way out (tbf)" % RATE)

    short_srv = t.server(listen=SHORT_SERVER, name="server-short", backlog=64)
    logs = Logs(t)
    logs.use(t.access_log.path)
    first_log = t.access_log.path
    policy = {"client": (1, 1, 2), "upstream_policy": (1, 1, 2)}

    def listeners(extra=False, barrier=False):
        d = {"s%d" % k: lab.listener(listen="%s:%d" % (P, 7000 + k),
                                     upstream="%s:%d" % (S, 7100 + k), **policy)
             for k in range(STREAMS)}
        d["short"] = lab.listener(listen=SHORT_LISTEN, upstream=SHORT_SERVER, **policy)
        if extra:
            d["extra"] = lab.listener(listen=EXTRA_LISTEN, upstream=SHORT_SERVER, **policy)
        if barrier:
            d["barrier"] = lab.listener(listen=BARRIER_LISTEN, upstream=SHORT_SERVER, **policy)
        return d

    def global_keys(access_log):
        return {"workers": str(WORKERS), "log_level": "info", "access_log": access_log,
                "admin_listen": lab.ADMIN_LISTEN}

    px = t.start_kaproxy(listeners(), global_keys(first_log))
    admin = lab.Admin(t)
    base0 = lab.proc_fd_kinds(px.pid)
    lab.log("kaproxy's descriptors at start: %s" % base0)

    short_cli = t.client("client-short")
    made = {"short": 0}

    def short(listen=SHORT_LISTEN, name="short", wait=True):
        """A connection that opens, exchanges SHORT_BYTES each way and closes;
        its line must be in the current file (awaited now, or checked at the
        end when not wait)."""
        local = short_cli.ok("connect %s 5" % listen)["local"]
        short_srv.ok("accept 5")
        t.exchange(short_cli, short_srv, SHORT_BYTES)
        close_in_order(short_cli, short_srv)
        made["short"] += 1
        if not wait:
            logs.expect(name, local, bytes_from_client=SHORT_BYTES,
                        bytes_to_client=SHORT_BYTES)
            return
        rec = logs.closed(name, local)
        t.check_closed(rec, "client_fin", "none", bytes_from_client=SHORT_BYTES,
                       bytes_to_client=SHORT_BYTES)

    short()
    streams = [Stream(t, k) for k in range(STREAMS)]
    for s in streams:
        s.thread.start()
    rounds = [s.wait_round(0, 30) for s in streams]
    base = lab.proc_fd_kinds(px.pid)
    lab.log("baseline with %d streams open: %s" % (STREAMS, base))

    def non_pipe(k):
        return {x: k[x] for x in ("file", "socket", "other")}

    def check_fds(what, sockets=0, ref=None):
        """Descriptors other than pipes are exactly ref's (the baseline), with
        `sockets` more sockets; waited for briefly (a SIGUSR1's reopen holds
        a second descriptor for a moment)."""
        ref = ref or base
        want = dict(non_pipe(ref), socket=ref["socket"] + sockets)
        seen = {}

        def same():
            seen.clear()
            seen.update(lab.proc_fd_kinds(px.pid))
            return non_pipe(seen) == want
        try:
            lab.wait_until(same, 3, "descriptors")
        except lab.Failure:
            pass
        t.check(non_pipe(seen) == want,
                "%s: kaproxy holds files/sockets/other %s, expected %s (pipes %d; files %s)"
                % (what, non_pipe(seen), want, seen["pipe"], seen["paths"]))
        return seen

    def flowing(what):
        """Every stream has completed a round since the last check."""
        for i, s in enumerate(streams):
            rounds[i] = s.wait_round(rounds[i], 30)
        t.check(True, "%s: every stream moved %d more bytes each way, checked" % (what, CHUNK))

    def streams_open(what):
        t.check(all(logs.none_for(s.name, s.local) for s in streams),
                "%s: no stream connection has been closed (no line for any)" % what)

    outcomes = {"reloaded ": 0, "reload failed": 0}

    def hup(ini, outcome, what, log=None):
        """Write ini, SIGHUP, and wait for kaproxy's verdict on it; from then
        on, lines go to log when given."""
        outcomes[outcome] += 1
        other = "reload failed" if outcome == "reloaded " else "reloaded "
        px.reload(ini)
        px.wait_log(outcome, outcomes[outcome], timeout=10)
        t.check(px.stderr_text(None).count(other) == outcomes[other],
                "reload %d (%s): %s, and nothing else"
                % (sum(outcomes.values()), what, outcome.strip()))
        if log is not None:
            logs.use(log)

    def settled(n, what, sockets=0, via_extra=False):
        """After reload n: a short connection (and one through extra) has its
        line in the current file, every stream has moved on, and the
        descriptors are the baseline's plus `sockets`."""
        short()
        if via_extra:
            short(EXTRA_LISTEN, "extra")
        flowing("after reload %d" % n)
        check_fds("after reload %d (%s)" % (n, what), sockets=sockets)

    def ini(access_log, **which):
        return t.kaproxy_ini(listeners(**which), global_keys(access_log))

    # 1. keepalive policy changed
    policy["client"] = policy["upstream_policy"] = (2, 1, 2)
    hup(ini(first_log), "reloaded ", "policy changed")
    settled(1, "policy changed")

    # 2. access_log moved to a new file
    log2 = os.path.join(t.dir, "access-2.log")
    hup(ini(log2), "reloaded ", "access_log moved", log=log2)
    settled(2, "access_log moved")

    # 3. listener extra added, and used by a connection that stays open
    hup(ini(log2, extra=True), "reloaded ", "listener added")
    t.wait_listening(px, {EXTRA_LISTEN}, 5)
    extra_cli = t.client("client-extra")
    extra_local = extra_cli.ok("connect %s 5" % EXTRA_LISTEN)["local"]
    extra_conn = int(short_srv.ok("accept 5")["conn"])
    t.exchange(extra_cli, short_srv, SHORT_BYTES)
    extra_bytes = SHORT_BYTES
    settled(3, "listener added", sockets=WORKERS + 2, via_extra=True)

    # 4. a broken file: refused, the running configuration (extra too) stays
    hup("[global]\nno_such_key = 1\n", "reload failed", "broken file")
    settled(4, "broken file refused", sockets=WORKERS + 2, via_extra=True)

    # 5. extra removed: no new connection, its live one carries on
    hup(ini(log2), "reloaded ", "listener removed")
    r = short_cli.cmd("connect %s 3" % EXTRA_LISTEN)
    t.check(r.status == "ERR" and r.get("errno") == "ECONNREFUSED",
            "the removed listener refuses new connections (%s)" % r)
    short_srv.ok("use %d" % extra_conn)
    t.exchange(extra_cli, short_srv, SHORT_BYTES)
    extra_bytes += SHORT_BYTES
    t.check(True, "the connection of the removed listener still carries bytes both ways")
    check_fds("after reload 5 (listener removed), its connection open", sockets=2)
    close_in_order(extra_cli, short_srv)
    t.check_closed(logs.closed("extra", extra_local), "client_fin", "none",
                   bytes_from_client=extra_bytes, bytes_to_client=extra_bytes)
    settled(5, "listener removed, its connection closed")

    # 6. access_log an unwritable path (a directory): refused
    hup(ini(t.dir), "reload failed", "access_log unwritable")
    t.check("access_log %s" % t.dir in px.stderr_text(None),
            "kaproxy says which access_log it could not open")
    settled(6, "unwritable access_log refused")

    # 7. back to the first file (appended to)
    hup(ini(first_log), "reloaded ", "access_log back to the first file", log=first_log)
    settled(7, "access_log back to the first file")

    # 8. keepalive policy changed again
    policy["client"] = (1, 1, 3)
    hup(ini(first_log), "reloaded ", "policy changed")
    settled(8, "policy changed")

    # 9. nothing changed
    hup(ini(first_log), "reloaded ", "unchanged")
    settled(9, "unchanged")

    # 10. access_log moved to a third file
    log3 = os.path.join(t.dir, "access-3.log")
    hup(ini(log3), "reloaded ", "access_log moved", log=log3)
    settled(10, "access_log moved")
    streams_open("after ten reloads")

    # The storm: SIGHUP and SIGUSR1 alternating, as fast as possible, while
    # the streams flow and short connections open and close.
    churn_stop = threading.Event()
    churn_error = []

    def churn():
        try:
            while not churn_stop.is_set():
                short(wait=False)
        except BaseException as e:
            churn_error.append(e)
    short_cli.quiet = short_srv.quiet = True
    churner = threading.Thread(target=churn, name="churn", daemon=True)
    kinds = {signal.SIGHUP: "reloaded ", signal.SIGUSR1: "access_log %s: reopened" % log3}
    before = {sig: px.stderr_text(None).count(text) for sig, text in kinds.items()}
    failed_before = px.stderr_text(None).count("reload failed")
    sent = collections.Counter()
    churner.start()
    started = time.monotonic()
    made_before = made["short"]
    # At least STORM signals, and on until short connections have opened and
    # closed in the middle of it.
    while sum(sent.values()) < STORM or made["short"] - made_before < STORM_CHURN:
        if time.monotonic() - started >= STORM_MAX_S or churn_error:
            raise lab.Failure("the storm: %d signals sent in %.1f s, %d short connections made"
                              " meanwhile (%r)" % (sum(sent.values()), time.monotonic() - started,
                                                   made["short"] - made_before, churn_error))
        sig = signal.SIGHUP if sum(sent.values()) % 2 == 0 else signal.SIGUSR1
        # As fast as kaproxy's threads take them: one still pending in the
        # kernel would merge with the next of its kind.
        lab.wait_until(lambda: not lab.signal_pending(px.pid, sig), 5,
                       "kaproxy to take %s" % signal.Signals(sig).name, interval=0.0005)
        os.kill(px.pid, sig)
        sent[sig] += 1
    sent_s = time.monotonic() - started
    # The reload after the storm, told apart by what it does (it adds a
    # listener): the storm's signals were all taken before it was sent.
    px.reload(ini(log3, barrier=True))
    t.wait_listening(px, {BARRIER_LISTEN}, 30)
    handled_s = time.monotonic() - started
    counts = {sig: px.stderr_text(None).count(text) - before[sig] for sig, text in kinds.items()}
    counts[signal.SIGHUP] -= 1      # the barrier's
    lab.log("storm: %d SIGHUP and %d SIGUSR1 sent in %.3f s; %d reloads and %d reopens "
            "logged; the reload after it done at %.3f s; %d short connections closed meanwhile"
            % (sent[signal.SIGHUP], sent[signal.SIGUSR1], sent_s, counts[signal.SIGHUP],
               counts[signal.SIGUSR1], handled_s, made["short"] - made_before))
    # Exactly one each per signal in a plain build; a sanitizer's runtime
    # defers signals to a safe point and may merge two of a kind there.
    t.check(all(1 <= counts[sig] <= sent[sig] for sig in kinds),
            "SIGHUPs of the storm reloaded (%d of %d) and SIGUSR1s reopened the log (%d of %d)"
            % (counts[signal.SIGHUP], sent[signal.SIGHUP], counts[signal.SIGUSR1],
               sent[signal.SIGUSR1]))
    t.check(px.stderr_text(None).count("reload failed") == failed_before,
            "no reload of the storm failed")
    check_fds("after the storm, the barrier listener added", sockets=WORKERS)
    flowing("after the storm")
    churn_stop.set()
    churner.join(30)
    t.check(not churner.is_alive() and not churn_error,
            "short connections opened and closed through the storm (%d in all): %r"
            % (made["short"], churn_error))
    short_cli.quiet = short_srv.quiet = False
    outcomes["reloaded "] = px.stderr_text(None).count("reloaded ")
    hup(ini(log3), "reloaded ", "barrier listener removed")
    lab.wait_until(lambda: BARRIER_LISTEN not in {
        x["local"] for x in lab.proc_tcp(px.pid) if x["state"] == "LISTEN"}, 10,
        "the barrier listener to close")
    short()
    check_fds("after the storm")
    streams_open("after the storm")

    code, body = admin.request("/healthz")
    t.check(code == 200, "/healthz answers 200 after the storm (%s %r)" % (code, body))

    # Streams end: every byte was checked round by round; each has one line.
    moved = 0
    for s in streams:
        s.finish(ROUND_TIMEOUT * 2 + 10)
        s.close()
        rec = logs.closed(s.name, s.local)
        t.check_closed(rec, "client_fin", "none", bytes_from_client=s.c2s,
                       bytes_to_client=s.s2c)
        moved += s.c2s + s.s2c
    t.check(True, "%d streams moved %d bytes in %d rounds, every byte checked"
            % (STREAMS, moved, sum(s.rounds for s in streams)))
    logs.check_exactly_one_each()
    end = check_fds("all connections closed", ref=base0)
    lab.log("descriptors: at start %s, with streams %s, at the end %s"
            % (base0, base, end))
    t.check(end["pipe"] <= base0["pipe"] + 2 * POOL_PIPES * WORKERS,
            "pipes: %d at the end, %d at start: no more than the workers' pools keep "
            "(%d per worker)" % (end["pipe"], base0["pipe"], POOL_PIPES))
    want = sorted([p for p in base0["paths"] if p != first_log] + [log3])
    t.check(end["paths"] == want, "the only access log kaproxy holds is the current one "
            "(files held %s, expected %s)" % (end["paths"], want))


if __name__ == "__main__":
    lab.run(main, __doc__)
