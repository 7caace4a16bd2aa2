"""
bulkpeer: many TCP ends in one process, one epoll loop, for load scenarios.

peer.py is one socket driven step by step; this drives thousands at once and
checks every byte by SHA-256, so a load scenario can push gigabytes through
kaproxy and prove they arrived unchanged.  Driven over stdin like peer.py:
every command gets exactly one answer line, "OK job=NAME key=value ..." or
"ERR job=NAME ...", written when the job has finished (or its timeout T, in
seconds, expired).  Jobs run concurrently: a second command is read and
started while the first one's sockets are still moving bytes, so answers may
come in any order; each names its job.

Every payload comes from a seeded PRNG (random.Random), so a failing run is
reproduced with the same --seed (and the same Python: the module promises
the same sequence across versions only for random()).

Client (prints "READY"):
  bulkpeer.py --seed S [--count N --min A --max B]
  open IP:PORT T     open N connections (at most 128 handshakes at a time)
                     and hold them, sending nothing
                     -> OK job=open opened=N secs=..
  ports PATH         write the local ports of the open connections, as JSON
                     -> OK job=ports n=N
  echo T PATH        on every open connection at once: send its payload
                     (A..B bytes, a random slice of a random block), then
                     shutdown(SHUT_WR); read the echo until EOF and compare
                     its length and SHA-256 with what was sent; write one
                     [port, size, sent, received, verdict] per connection to
                     PATH as JSON.
                     -> OK job=echo conns=N sent=.. received=.. verified=N secs=..
                     |  ERR job=echo ... bad=K first_bad=PORT:WHY
  upload IP:PORT BYTES T
                     one connection: send BYTES of the "up" stream, then
                     shutdown(SHUT_WR), wait for the server's orderly close
                     -> OK job=upload port=.. sent=.. sha=.. secs=..
  download IP:PORT T one connection: read until EOF, hashing, then close
                     -> OK job=download port=.. received=.. sha=.. secs=..

Server (prints "READY"):
  bulkpeer.py --seed S --echo IP:PORT --sink IP:PORT --source IP:PORT --source-bytes N
    echo: every byte read is sent back; after EOF and the last byte, close.
    sink: read until EOF, hashing, then close.
    source: send N bytes of the "down" stream, shutdown(SHUT_WR), read until
            EOF (nothing is expected), close.
  accepted N T       wait until N echo connections have been accepted
                     -> OK job=accepted accepted=N open=..
  echoed N T         wait until N echo connections have closed
                     -> OK job=echoed closed=N bytes=.. errors=0
  streams T          wait until one sink and one source connection ended
                     -> OK job=streams sink_received=.. sink_sha=..
                                      source_sent=.. source_sha=..

The streams repeat a random block whose length is a prime, so bytes that
kaproxy repeated or moved match the bytes they replace only when moved by a
multiple of that prime, never by a power-of-two buffer size.
"""

import argparse
import errno
import hashlib
import json
import os
import random
import resource
import selectors
import socket
import sys
import time

from peer import errname, out, parse_endpoint

CHUNK = 256 * 1024
ECHO_BLOCK = 8 << 20            # echo payloads are random slices of this block
STREAM_PERIOD = 4194301         # prime, ~4 MiB: the streams' repeat length
CONNECTS_IN_FLIGHT = 128
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


def stream_source(seed, direction):
    """source(offset, n) of a stream (see End): n <= CHUNK bytes at offset of
    a random block of STREAM_PERIOD bytes repeated, which the sender never
    holds more than once."""
    block = random.Random("%s:%s" % (seed, direction)).randbytes(STREAM_PERIOD)
    view = memoryview(block + block[:CHUNK])   # any n <= CHUNK is one slice

    def source(offset, n):
        i = offset % STREAM_PERIOD
        return view[i:i + n]
    return source


class Loop:
    """One epoll selector for every socket and stdin; jobs with deadlines."""

    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.jobs = []          # objects with .deadline, .poll() -> answer or None, .expire()
        self.rbuf = bytearray(CHUNK)
        self.rview = memoryview(self.rbuf)

    def add(self, sock, events, handler):
        self.sel.register(sock, events, handler)

    def set(self, sock, events, handler):
        self.sel.modify(sock, events, handler)

    def drop(self, sock):
        try:
            self.sel.unregister(sock)
        except (KeyError, ValueError):
            pass

    def run(self, on_command):
        stdin = sys.stdin.buffer.raw
        os.set_blocking(stdin.fileno(), False)
        pending = b""
        self.sel.register(stdin, READ, None)
        while True:
            timeout = 1.0
            if self.jobs:
                timeout = max(0.0, min(1.0, min(j.deadline for j in self.jobs) - time.monotonic()))
            for key, mask in self.sel.select(timeout):
                if key.data is None:
                    data = os.read(stdin.fileno(), 65536)
                    if not data:
                        return          # the harness is gone
                    pending += data
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        words = line.decode().split()
                        if words:
                            on_command(words)
                else:
                    key.data(mask)
            self.settle()

    def settle(self):
        now = time.monotonic()
        for job in list(self.jobs):
            answer = job.poll()
            if answer is None and now >= job.deadline:
                answer = job.expire()
            if answer is not None:
                self.jobs.remove(job)
                out(answer)

    def start(self, job, timeout):
        job.started = time.monotonic()
        job.deadline = job.started + float(timeout)
        self.jobs.append(job)
        self.settle()

    def secs(self, job):
        return "%.2f" % (time.monotonic() - job.started)


class End:
    """One socket of a checked conversation.  It sends nbytes taken from
    source(offset, n) (at most n bytes, n <= CHUNK), hashing what went out,
    then shuts down its write side; with nbytes 0 it sends nothing and its
    FIN goes only when it closes.  It reads until EOF, hashing what came in;
    more than expect_in bytes (when given) is an error.  Then it closes and
    calls done(end, why) once: why is None for an EOF after all was sent."""
    __slots__ = ("loop", "sock", "nbytes", "source", "expect_in", "done", "sent",
                 "received", "h_out", "h_in", "closed")

    def __init__(self, loop, sock, nbytes, source, done, expect_in=None):
        self.loop, self.sock, self.nbytes, self.source = loop, sock, nbytes, source
        self.done, self.expect_in = done, expect_in
        self.sent = self.received = 0
        self.h_out, self.h_in = hashlib.sha256(), hashlib.sha256()
        self.closed = False
        loop.add(sock, READ | (WRITE if nbytes else 0), self.event)

    def event(self, mask):
        try:
            if mask & WRITE:
                chunk = self.source(self.sent, min(CHUNK, self.nbytes - self.sent))
                n = self.sock.send(chunk)
                self.h_out.update(chunk[:n])
                self.sent += n
                if self.sent == self.nbytes:
                    self.sock.shutdown(socket.SHUT_WR)
                    self.loop.set(self.sock, READ, self.event)
            if mask & READ:
                n = self.sock.recv_into(self.loop.rbuf)
                if n == 0:
                    self.end(None if self.sent == self.nbytes else "eof_before_sent")
                    return
                self.h_in.update(self.loop.rview[:n])
                self.received += n
                if self.expect_in is not None and self.received > self.expect_in:
                    self.end("more_than_expected")
        except BlockingIOError:
            pass
        except OSError as e:
            self.end(errname(e))

    def end(self, why):
        """Close now (also from outside: a timeout) and report, once."""
        if self.closed:
            return
        self.closed = True
        self.loop.drop(self.sock)
        self.sock.close()
        self.done(self, why)


# --- client ---------------------------------------------------------------------

class EchoConn:
    """One echo connection: connected, then an End sending its payload (a
    slice of the client's random block) and expecting it back."""
    __slots__ = ("client", "sock", "port", "size", "off", "state", "why", "end", "on_open")

    def __init__(self, client, size, off):
        self.client, self.size, self.off = client, size, off
        self.sock = self.port = self.end = None
        self.state = "new"      # new, connecting, open, running, done, failed
        self.why = None

    def connect(self, addr, family, on_open):
        """Start connecting; on_open(self) follows once the handshake is done
        or failed.  False (and no call) when it failed at once."""
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.state = "connecting"
        self.on_open = on_open
        err = self.sock.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS):
            self.fail("connect_" + errno.errorcode.get(err, str(err)))
            return False
        self.client.loop.add(self.sock, WRITE, self.connected)
        return True

    def connected(self, mask):
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self.client.loop.drop(self.sock)
        if err:
            self.fail("connect_" + errno.errorcode.get(err, str(err)))
        else:
            self.port = self.sock.getsockname()[1]
            self.state = "open"
        self.on_open(self)

    def fail(self, why):
        self.sock.close()
        self.why, self.state = why, "failed"

    def go(self):
        self.state = "running"
        self.client.running += 1
        self.end = End(self.client.loop, self.sock, self.size, self.payload, self.ended,
                       expect_in=self.size)

    def payload(self, offset, n):
        start = self.off + offset
        return self.client.block[start:start + n]

    def ended(self, end, why):
        self.client.running -= 1
        if why is None and end.received != self.size:
            why = "short_echo"
        elif why is None and end.h_in.digest() != end.h_out.digest():
            why = "sha_mismatch"
        self.why, self.state = why, "failed" if why else "done"

    def counts(self):
        """(bytes sent, bytes received)"""
        return (self.end.sent, self.end.received) if self.end else (0, 0)


class OpenJob:
    def __init__(self, client, target):
        self.client = client
        self.family, self.addr = parse_endpoint(target)
        self.next = 0
        self.in_flight = 0
        self.refill()

    def refill(self):
        conns = self.client.conns
        while self.in_flight < CONNECTS_IN_FLIGHT and self.next < len(conns):
            c = conns[self.next]
            self.next += 1
            if c.connect(self.addr, self.family, self.opened):
                self.in_flight += 1

    def opened(self, conn):
        self.in_flight -= 1
        self.refill()

    def poll(self):
        conns = self.client.conns
        if self.next < len(conns) or self.in_flight:
            return None
        failed = [c for c in conns if c.state != "open"]
        if failed:
            return "ERR job=open opened=%d failed=%d first=%s" % (
                len(conns) - len(failed), len(failed), failed[0].why)
        return "OK job=open opened=%d secs=%s" % (len(conns), self.client.loop.secs(self))

    def expire(self):
        opened = sum(c.state == "open" for c in self.client.conns)
        return "ERR job=open opened=%d why=TIMEOUT" % opened


class EchoJob:
    def __init__(self, client, path):
        self.client, self.path = client, path
        for c in client.conns:
            if c.state == "open":
                c.go()

    def report(self):
        conns = self.client.conns
        counts = [c.counts() for c in conns]
        with open(self.path, "w") as f:
            json.dump([[c.port, c.size, sent, received, c.why or "ok"]
                       for c, (sent, received) in zip(conns, counts)], f)
        bad = [c for c in conns if c.state != "done"]
        line = "job=echo conns=%d sent=%d received=%d verified=%d secs=%s" % (
            len(conns), sum(sent for sent, _ in counts), sum(rcvd for _, rcvd in counts),
            len(conns) - len(bad), self.client.loop.secs(self))
        if bad:
            first = bad[0]
            return "ERR %s bad=%d first_bad=%s:%s" % (line, len(bad), first.port,
                                                     first.why or first.state)
        return "OK " + line

    def poll(self):
        # Counted, not searched: this runs after every batch of events.
        return None if self.client.running else self.report()

    def expire(self):
        for c in self.client.conns:
            if c.state == "running":
                c.end.end("TIMEOUT")
        return self.report()


class StreamJob:
    """One connection that sends a stream, half-closes and waits for the
    server's orderly close (upload), or reads one until EOF, then closes
    (download)."""

    def __init__(self, client, kind, target, nbytes=0):
        self.loop, self.kind = client.loop, kind
        self.end, self.port, self.why, self.done = None, "-", None, False
        family, addr = parse_endpoint(target)
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(10)
        try:
            sock.connect(addr)
        except OSError as e:
            sock.close()
            self.why, self.done = "connect_" + errname(e), True
            return
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        if kind == "upload":
            self.end = End(self.loop, sock, nbytes, client.up, self.ended, expect_in=0)
        else:
            self.end = End(self.loop, sock, 0, None, self.ended)

    def ended(self, end, why):
        self.why, self.done = why, True

    def answer(self):
        end = self.end
        sent, received = (end.sent, end.received) if end else (0, 0)
        sha = "-" if not end else (end.h_out if self.kind == "upload" else end.h_in).hexdigest()
        line = "job=%s port=%s sent=%d received=%d sha=%s secs=%s" % (
            self.kind, self.port, sent, received, sha, self.loop.secs(self))
        return ("ERR %s why=%s" % (line, self.why)) if self.why else "OK " + line

    def poll(self):
        return self.answer() if self.done else None

    def expire(self):
        if not self.done:
            self.end.end("TIMEOUT")
        return self.answer()


class Client:
    def __init__(self, args):
        self.loop = Loop()
        rng = random.Random(args.seed)
        self.block = memoryview(rng.randbytes(ECHO_BLOCK))
        self.conns = []
        self.running = 0        # echo connections still moving bytes
        for _ in range(args.count):
            size = rng.randint(args.min, args.max)
            self.conns.append(EchoConn(self, size, rng.randrange(ECHO_BLOCK - size + 1)))
        self.up = stream_source(args.seed, "up")
        out("READY")

    def command(self, words):
        cmd, rest = words[0], words[1:]
        if cmd == "open":
            self.loop.start(OpenJob(self, rest[0]), rest[1])
        elif cmd == "ports":
            with open(rest[0], "w") as f:
                json.dump([c.port for c in self.conns], f)
            out("OK job=ports n=%d" % len(self.conns))
        elif cmd == "echo":
            self.loop.start(EchoJob(self, rest[1]), rest[0])
        elif cmd == "upload":
            self.loop.start(StreamJob(self, "upload", rest[0], int(rest[1])), rest[2])
        elif cmd == "download":
            self.loop.start(StreamJob(self, "download", rest[0]), rest[1])
        else:
            out("ERR job=%s why=unknown_command" % cmd)


# --- server ---------------------------------------------------------------------

class EchoServerConn:
    """Sends back every byte; closes once EOF was read and all is sent."""
    __slots__ = ("server", "sock", "pending", "eof")

    def __init__(self, server, sock):
        self.server, self.sock = server, sock
        self.pending = None
        self.eof = False
        server.loop.add(sock, READ, self.event)

    def event(self, mask):
        loop = self.server.loop
        try:
            if mask & WRITE:
                n = self.sock.send(self.pending)
                self.server.echo_bytes += n
                self.pending = self.pending[n:] if n < len(self.pending) else None
            elif mask & READ:
                data = self.sock.recv(CHUNK)
                if not data:
                    self.eof = True
                else:
                    try:
                        n = self.sock.send(data)
                    except BlockingIOError:
                        n = 0
                    self.server.echo_bytes += n
                    if n < len(data):
                        self.pending = memoryview(data)[n:]
            if self.pending is not None:
                loop.set(self.sock, WRITE, self.event)
            elif self.eof:
                self.close()
            elif mask & WRITE:
                loop.set(self.sock, READ, self.event)
        except BlockingIOError:
            pass
        except OSError as e:
            self.server.echo_errors.append(errname(e))
            self.close()

    def close(self):
        self.server.loop.drop(self.sock)
        self.sock.close()
        self.server.echo_closed += 1


class WaitJob:
    """Answers once cond() holds; what() formats the answer either way."""

    def __init__(self, name, cond, what):
        self.name, self.cond, self.what = name, cond, what

    def poll(self):
        return self.what("OK") if self.cond() else None

    def expire(self):
        return self.what("ERR") + " why=TIMEOUT"


class Server:
    def __init__(self, args):
        self.loop = Loop()
        self.source_bytes = args.source_bytes
        self.down = stream_source(args.seed, "down")
        self.echo_accepted = self.echo_closed = self.echo_bytes = 0
        self.echo_errors = []
        self.streams = []       # (kind, bytes, sha, why) of each ended stream connection
        for addr, on_accept in ((args.echo, self.echo), (args.sink, self.sink),
                                (args.source, self.source)):
            if addr:
                self.listen(addr, on_accept)
        out("READY")

    def echo(self, sock):
        self.echo_accepted += 1
        EchoServerConn(self, sock)

    def sink(self, sock):
        End(self.loop, sock, 0, None, lambda end, why: self.streams.append(
            ("sink", end.received, end.h_in.hexdigest(), why)))

    def source(self, sock):
        End(self.loop, sock, self.source_bytes, self.down, lambda end, why: self.streams.append(
            ("source", end.sent, end.h_out.hexdigest(), why)), expect_in=0)

    def listen(self, text, on_accept):
        family, addr = parse_endpoint(text)
        lsock = socket.socket(family, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(addr)
        lsock.listen(4096)
        lsock.setblocking(False)

        def accept(mask):
            while True:
                try:
                    sock, _ = lsock.accept()
                except BlockingIOError:
                    return
                sock.setblocking(False)
                on_accept(sock)
        self.loop.add(lsock, READ, accept)

    def command(self, words):
        cmd, rest = words[0], words[1:]
        if cmd == "accepted":
            n = int(rest[0])
            self.loop.start(WaitJob(cmd, lambda: self.echo_accepted >= n, lambda st:
                                    "%s job=accepted accepted=%d open=%d" % (
                                        st, self.echo_accepted,
                                        self.echo_accepted - self.echo_closed)), rest[1])
        elif cmd == "echoed":
            n = int(rest[0])
            self.loop.start(WaitJob(cmd, lambda: self.echo_closed >= n, lambda st:
                                    "%s job=echoed closed=%d bytes=%d errors=%d%s" % (
                                        "ERR" if st == "OK" and self.echo_errors else st,
                                        self.echo_closed, self.echo_bytes,
                                        len(self.echo_errors),
                                        " first_error=" + self.echo_errors[0]
                                        if self.echo_errors else "")), rest[1])
        elif cmd == "streams":
            self.loop.start(WaitJob(cmd, self.streams_ended, self.streams_answer), rest[0])
        else:
            out("ERR job=%s why=unknown_command" % cmd)

    def streams_ended(self):
        kinds = [s[0] for s in self.streams]
        return "sink" in kinds and "source" in kinds

    def streams_answer(self, status):
        fields = []
        for kind, nbytes, sha, why in self.streams:
            verb = "received" if kind == "sink" else "sent"
            fields.append("%s_%s=%d %s_sha=%s" % (kind, verb, nbytes, kind, sha))
            if why:
                status = "ERR"
                fields.append("%s_why=%s" % (kind, why))
        if len(self.streams) > 2:
            status = "ERR"
            fields.append("extra_streams=%d" % (len(self.streams) - 2))
        return "%s job=streams %s" % (status, " ".join(fields))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", required=True)
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--min", type=int, default=1024)
    ap.add_argument("--max", type=int, default=2 << 20)
    ap.add_argument("--echo")
    ap.add_argument("--sink")
    ap.add_argument("--source")
    ap.add_argument("--source-bytes", type=int, default=0)
    args = ap.parse_args()
    # A socket per connection: thousands of descriptors.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.max > ECHO_BLOCK:
        ap.error("--max above %d" % ECHO_BLOCK)
    if args.source and args.source_bytes <= 0:
        ap.error("--source needs --source-bytes above 0")
    side = Server(args) if (args.echo or args.sink or args.source) else Client(args)
    side.loop.run(side.command)


if __name__ == "__main__":
    main()
