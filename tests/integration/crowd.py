"""
crowd: many TCP connections in one process (hundreds or thousands), run
inside a namespace by lab.py and driven line by line over stdin like
peer.py: every command gets exactly one answer line on stdout,
"STATUS key=value ...".  For the scenarios one peer.py process per
connection would not scale to: overload, idle and slow peers, mass resets.

Start:  crowd.py [--expect echo|stream]     client role: prints "READY"
        crowd.py --listen IP:PORT           server role: accepts every connection
                                            as it comes, prints "READY listen=IP:PORT"

Bytes sent follow peer.py's stream pattern of the role's direction and
what arrives is verified as it arrives.  A client with --expect echo starts
each connection's stream at its own offset and expects its own bytes back
(an echo server: a byte delivered to the wrong connection is a mismatch);
with --expect stream (the default) it expects the server's stream from its
start.  A server expects the client's stream from its start, unless it
echoes (then it forwards without judging).

Every connection runs the crowd's current settings: reading on or off
(off: a peer that never reads), echo on or off.  A connection ends at the
first of EOF (it is then closed), an error (RESET for ECONNRESET, else
ERROR), or a local close.

Commands (T = timeout in seconds, default 10):
  connect N IP:PORT [T] -> OK connected=K reset=R failed=F errnos=..   (client: N
                           connects at once; answered when all N have completed or failed;
                           reset counts handshakes that completed and met an RST at once)
  read on|off           -> OK          (every connection, and those to come)
  echo on|off           -> OK          (send back what arrives)
  send N                -> OK          (every open connection queues N more bytes)
  wait WHAT N [T]       -> OK ...stats | TIMEOUT ...stats | SHORT ...stats
                           WHAT: accepted (total accepted >= N), ended (connections ended
                           >= N), received / sent (every connection, open or ended, has
                           received / sent >= N bytes; SHORT at once when one ended short of
                           it), quiet (no byte moved for N seconds)
                           A mismatch is described on stderr (connection, stream offset,
                           where in the pattern the wrong bytes come from).
  stats                 -> OK conns= open= accepted= eof= reset= error= closed= mismatch=
                              sent= received= min_received= max_received= errnos=
  close                 -> OK closed=K   (close() every open connection: FIN)
  rst_close             -> OK closed=K   (SO_LINGER {1,0} then close(): RST)
  quit                  -> OK, exits
"""

import argparse
import errno
import os
import resource
import selectors
import socket
import struct
import sys
import time

from peer import C2S, S2C, PERIOD, errname, parse_endpoint

CHUNK = 65536
BACKLOG = 4096
SEED_STEP = 7919         # per-connection offset of an echo client's stream


def doubled(base):
    """The pattern continued for CHUNK bytes past its end (CHUNK is longer
    than PERIOD), so any CHUNK bytes of the stream are one slice."""
    return (base * (CHUNK // PERIOD + 2))[:PERIOD + CHUNK]


class Conn:
    __slots__ = ("sock", "fd", "seed", "sent", "queued", "received", "out", "end",
                 "connecting", "events")

    def __init__(self, sock, seed):
        self.sock, self.fd, self.seed = sock, sock.fileno(), seed
        self.sent = self.queued = self.received = 0
        self.out = bytearray()      # echo bytes not yet sent
        self.end = None             # None while open, else EOF, RESET, ERROR, CLOSED
        self.connecting = False
        self.events = 0


class Crowd:
    def __init__(self, listen, expect):
        self.sel = selectors.EpollSelector()
        self.conns = []
        self.reading = True
        self.echo = False
        self.accepted = 0
        self.mismatch = 0
        self.errnos = {}
        self.last_move = time.monotonic()
        self.waiting = None         # (answer, deadline) of the command awaiting its answer
        self.connect_batch = None
        self.lsock = None
        if listen:
            family, addr = parse_endpoint(listen)
            self.lsock = socket.socket(family, socket.SOCK_STREAM)
            self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.lsock.bind(addr)
            self.lsock.listen(BACKLOG)
            self.lsock.setblocking(False)
            self.sel.register(self.lsock, selectors.EVENT_READ, "listen")
            self.send_pat, self.recv_pat = doubled(S2C), doubled(C2S)
            self.seeded = False
            out("READY listen=%s" % listen)
        else:
            self.send_pat = doubled(C2S)
            self.recv_pat = doubled(C2S if expect == "echo" else S2C)
            self.seeded = expect == "echo"
            out("READY")
        self.sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
        self.stdin_buf = b""

    # -- registration ----------------------------------------------------------

    def want(self, c):
        ev = 0
        if c.end is None:
            if c.connecting or c.out or c.queued:
                ev |= selectors.EVENT_WRITE
            if self.reading and not c.connecting:
                ev |= selectors.EVENT_READ
        if ev == c.events:
            return
        if c.events == 0:
            self.sel.register(c.fd, ev, c)
        elif ev == 0:
            self.sel.unregister(c.fd)
        else:
            self.sel.modify(c.fd, ev, c)
        c.events = ev

    def finish(self, c, end, err=None):
        if c.end is not None:
            return
        c.end = end
        if err is not None:
            name = errname(err)
            self.errnos[name] = self.errnos.get(name, 0) + 1
        self.want(c)
        c.sock.close()

    def failed(self, c, e):
        self.finish(c, "RESET" if e.errno == errno.ECONNRESET else "ERROR", e)

    # -- the byte path ---------------------------------------------------------

    def on_read(self, c):
        try:
            data = c.sock.recv(CHUNK)
        except BlockingIOError:
            return
        except OSError as e:
            self.failed(c, e)
            return
        if not data:
            self.finish(c, "EOF")
            return
        self.last_move = time.monotonic()
        if self.echo:
            c.out += data
        else:
            i = (c.seed + c.received) % PERIOD
            if data != self.recv_pat[i:i + len(data)]:
                self.mismatch += 1
                self.report_mismatch(c, data, i)
                self.finish(c, "ERROR", OSError(errno.EBADMSG, "mismatch"))
                return
        c.received += len(data)
        self.want(c)

    def report_mismatch(self, c, data, i):
        """Say on stderr where a connection's bytes went wrong, and where in
        the stream the wrong bytes seem to come from (lost or repeated bytes
        show as a shift)."""
        want = self.recv_pat[i:i + len(data)]
        bad = next(k for k in range(len(data)) if data[k] != want[k])
        probe = data[bad:bad + 64]
        found = self.recv_pat.find(probe) if len(probe) == 64 else -1
        sys.stderr.write("mismatch on connection %d (local %s) at stream offset %d "
                         "(chunk of %d, bad from byte %d); the bytes there match pattern "
                         "offset %s, expected %d\n" % (
                             self.conns.index(c), c.sock.getsockname(), c.received + bad,
                             len(data), bad, found, (i + bad) % PERIOD))
        sys.stderr.flush()

    def on_write(self, c):
        if c.connecting:
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            c.connecting = False
            b = self.connect_batch
            if err:
                b["reset" if err == errno.ECONNRESET else "failed"] += 1
                self.finish(c, "RESET" if err == errno.ECONNRESET else "ERROR",
                            OSError(err, os.strerror(err)))
            else:
                b["connected"] += 1
                self.want(c)
            return
        try:
            if c.out:
                n = c.sock.send(c.out[:CHUNK])
                del c.out[:n]
            elif c.queued:
                i = (c.seed + c.sent) % PERIOD
                n = c.sock.send(memoryview(self.send_pat)[i:i + min(CHUNK, c.queued)])
                c.sent += n
                c.queued -= n
        except BlockingIOError:
            return
        except OSError as e:
            self.failed(c, e)
            return
        self.last_move = time.monotonic()
        self.want(c)

    def on_accept(self):
        while True:
            try:
                s, _ = self.lsock.accept()
            except BlockingIOError:
                return
            s.setblocking(False)
            c = Conn(s, 0)
            self.conns.append(c)
            self.accepted += 1
            self.want(c)

    # -- commands --------------------------------------------------------------

    def stats(self):
        ends = {}
        for c in self.conns:
            ends[c.end] = ends.get(c.end, 0) + 1
        received = [c.received for c in self.conns] or [0]
        return ("conns=%d open=%d accepted=%d eof=%d reset=%d error=%d closed=%d mismatch=%d "
                "sent=%d received=%d min_received=%d max_received=%d errnos=%s" % (
                    len(self.conns), ends.get(None, 0), self.accepted, ends.get("EOF", 0),
                    ends.get("RESET", 0), ends.get("ERROR", 0), ends.get("CLOSED", 0),
                    self.mismatch, sum(c.sent for c in self.conns), sum(received),
                    min(received), max(received),
                    ",".join("%s:%d" % kv for kv in sorted(self.errnos.items())) or "-"))

    def do_connect(self, n, target, t="10"):
        family, addr = parse_endpoint(target)
        self.connect_batch = b = {"connected": 0, "reset": 0, "failed": 0}
        batch = []
        for _ in range(int(n)):
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setblocking(False)
            c = Conn(s, (len(self.conns) * SEED_STEP) % PERIOD if self.seeded else 0)
            self.conns.append(c)
            batch.append(c)
            err = s.connect_ex(addr)
            if err not in (0, errno.EINPROGRESS):
                b["failed"] += 1
                self.finish(c, "ERROR", OSError(err, os.strerror(err)))
                continue
            c.connecting = True
            self.want(c)

        def done():
            if any(c.connecting for c in batch):
                return None
            return "OK connected=%d reset=%d failed=%d errnos=%s" % (
                b["connected"], b["reset"], b["failed"],
                ",".join("%s:%d" % kv for kv in sorted(self.errnos.items())) or "-")
        return self.wait_for(done, t)

    def do_read(self, onoff):
        self.reading = onoff == "on"
        for c in self.conns:
            self.want(c)
        return "OK"

    def do_echo(self, onoff):
        self.echo = onoff == "on"
        return "OK"

    def do_send(self, n):
        for c in self.conns:
            if c.end is None:
                c.queued += int(n)
                self.want(c)
        return "OK"

    def do_wait(self, what, n, t="10"):
        n = float(n) if what == "quiet" else int(n)
        preds = {
            "accepted": lambda: self.accepted >= n,
            "ended": lambda: sum(c.end is not None for c in self.conns) >= n,
            "received": lambda: self.reached("received", n),
            "sent": lambda: self.reached("sent", n),
            "quiet": lambda: time.monotonic() - self.last_move >= n,
        }
        pred = preds[what]

        def answer():
            got = pred()
            if got == "short":
                return "SHORT " + self.stats()
            return "OK " + self.stats() if got else None
        return self.wait_for(answer, t)

    def reached(self, what, n):
        """Whether every connection has received / sent n bytes: True, False
        (not yet), or "short" when one ended before it could."""
        if not self.conns:
            return False
        if all(getattr(c, what) >= n for c in self.conns):
            return True
        if any(c.end is not None and getattr(c, what) < n for c in self.conns):
            return "short"
        return False

    def do_stats(self):
        return "OK " + self.stats()

    def close_all(self, rst):
        k = 0
        for c in self.conns:
            if c.end is None:
                if rst:
                    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.finish(c, "CLOSED")
                k += 1
        return "OK closed=%d" % k

    def do_close(self):
        return self.close_all(False)

    def do_rst_close(self):
        return self.close_all(True)

    def do_quit(self):
        out("OK")
        sys.exit(0)

    # -- the loop --------------------------------------------------------------

    def wait_for(self, answer, t):
        """Answer the current command with the line answer() returns once it
        returns one, or TIMEOUT after t seconds; the loop keeps running
        meanwhile."""
        self.waiting = (answer, time.monotonic() + float(t))
        return None

    def poll_waiting(self):
        answer, deadline = self.waiting
        line = answer()
        if line is not None:
            self.waiting = None
            out(line)
        elif time.monotonic() >= deadline:
            self.waiting = None
            out("TIMEOUT " + self.stats())

    def command(self, line):
        words = line.split()
        if not words:
            return
        fn = getattr(self, "do_" + words[0], None)
        if fn is None:
            out("ERR unknown=%s" % words[0])
            return
        try:
            answer = fn(*words[1:])
        except (TypeError, ValueError, IndexError, KeyError) as e:
            answer = "ERR usage=%s" % str(e).replace(" ", "_")
        if answer is not None:
            out(answer)

    def run(self):
        while True:
            if self.waiting:
                self.poll_waiting()
            # Commands run one at a time: the next once the last is answered.
            while b"\n" in self.stdin_buf and not self.waiting:
                line, self.stdin_buf = self.stdin_buf.split(b"\n", 1)
                self.command(line.decode())
            timeout = 0.05 if self.waiting else None
            for key, ev in self.sel.select(timeout):
                if key.data == "stdin":
                    data = os.read(sys.stdin.fileno(), 65536)
                    if not data:
                        sys.exit(0)
                    self.stdin_buf += data
                    continue
                if key.data == "listen":
                    self.on_accept()
                    continue
                c = key.data
                if ev & selectors.EVENT_WRITE and c.end is None:
                    self.on_write(c)
                if ev & selectors.EVENT_READ and c.end is None:
                    self.on_read(c)


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main():
    # Thousands of sockets: the soft descriptor limit is often 1024, the hard one far more.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen")
    ap.add_argument("--expect", choices=("echo", "stream"), default="stream")
    args = ap.parse_args()
    Crowd(args.listen, args.expect).run()


if __name__ == "__main__":
    main()
