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


def stream_block(seed, direction):
    """The repeating block of a stream, with CHUNK bytes of wrap-around so
    any send of up to CHUNK bytes is one slice."""
    block = random.Random("%s:%s" % (seed, direction)).randbytes(STREAM_PERIOD)
    return memoryview(block + block[:CHUNK])


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


# --- client ---------------------------------------------------------------------

class EchoConn:
    """One echo connection: its payload, what went out and what came back."""
    __slots__ = ("client", "loop", "sock", "port", "size", "off", "sent", "received",
                 "h_sent", "h_recv", "state", "why", "payload", "on_open")

    def __init__(self, client, size, off, payload):
        self.client, self.loop = client, client.loop
        self.size, self.off, self.payload = size, off, payload
        self.sock, self.port = None, None
        self.sent = self.received = 0
        self.h_sent, self.h_recv = hashlib.sha256(), hashlib.sha256()
        self.state = "new"      # new, connecting, open, running, done, failed
        self.why = None

    def connect(self, addr, family, on_open):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.state = "connecting"
        self.on_open = on_open
        err = self.sock.connect_ex(addr)
        if err not in (0, 115):     # EINPROGRESS
            self.fail(os.strerror(err).replace(" ", "_"))
            on_open(self)
            return
        self.loop.add(self.sock, WRITE, self.connected)

    def connected(self, mask):
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self.loop.drop(self.sock)
        if err:
            self.fail("connect_" + os.strerror(err).replace(" ", "_"))
        else:
            self.port = self.sock.getsockname()[1]
            self.state = "open"
        self.on_open(self)

    def go(self):
        self.state = "running"
        self.client.running += 1
        self.loop.add(self.sock, READ | WRITE, self.event)

    def event(self, mask):
        try:
            if mask & WRITE:
                start = self.off + self.sent
                n = self.sock.send(self.payload[start:start + min(CHUNK, self.size - self.sent)])
                self.h_sent.update(self.payload[start:start + n])
                self.sent += n
                if self.sent == self.size:
                    self.sock.shutdown(socket.SHUT_WR)
                    self.loop.set(self.sock, READ, self.event)
            if mask & READ:
                n = self.sock.recv_into(self.loop.rbuf)
                if n == 0:
                    self.finish()
                    return
                self.h_recv.update(self.loop.rview[:n])
                self.received += n
                if self.received > self.size:
                    self.fail("more_than_sent")
        except BlockingIOError:
            pass
        except OSError as e:
            self.fail(errname(e))

    def finish(self):
        self.loop.drop(self.sock)
        self.sock.close()
        self.client.running -= 1
        if self.sent != self.size:
            self.why = "eof_before_sent"
        elif self.received != self.size:
            self.why = "short_echo"
        elif self.h_recv.digest() != self.h_sent.digest():
            self.why = "sha_mismatch"
        self.state = "failed" if self.why else "done"

    def fail(self, why):
        if self.sock is not None:
            self.loop.drop(self.sock)
            self.sock.close()
        if self.state == "running":
            self.client.running -= 1
        self.why = self.why or why
        self.state = "failed"


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
            self.in_flight += 1
            c.connect(self.addr, self.family, self.opened)

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
        with open(self.path, "w") as f:
            json.dump([[c.port, c.size, c.sent, c.received, c.why or "ok"] for c in conns], f)
        bad = [c for c in conns if c.state != "done"]
        line = "job=echo conns=%d sent=%d received=%d verified=%d secs=%s" % (
            len(conns), sum(c.sent for c in conns), sum(c.received for c in conns),
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
                c.fail("TIMEOUT")
        return self.report()


class StreamJob:
    """One connection that sends a stream then half-closes (upload), or reads
    one until EOF (download); both wait for the orderly close."""

    def __init__(self, client, kind, target, nbytes=0):
        self.loop, self.kind, self.nbytes = client.loop, kind, nbytes
        self.block = client.up if kind == "upload" else None
        self.sent = self.received = 0
        self.h = hashlib.sha256()
        self.why = None
        self.done = False
        family, addr = parse_endpoint(target)
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        try:
            self.sock.connect(addr)
        except OSError as e:
            self.why, self.done = "connect_" + errname(e), True
            return
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        events = READ | (WRITE if kind == "upload" and nbytes else 0)
        if kind == "upload" and not nbytes:
            self.sock.shutdown(socket.SHUT_WR)
        self.loop.add(self.sock, events, self.event)

    def event(self, mask):
        try:
            if mask & WRITE:
                i = self.sent % STREAM_PERIOD
                n = self.sock.send(self.block[i:i + min(CHUNK, self.nbytes - self.sent)])
                self.h.update(self.block[i:i + n])
                self.sent += n
                if self.sent == self.nbytes:
                    self.sock.shutdown(socket.SHUT_WR)
                    self.loop.set(self.sock, READ, self.event)
            if mask & READ:
                n = self.sock.recv_into(self.loop.rbuf)
                if n == 0:
                    self.end(None if self.kind == "download" or self.sent == self.nbytes
                             else "eof_before_sent")
                    return
                self.received += n
                if self.kind == "download":
                    self.h.update(self.loop.rview[:n])
                else:
                    self.end("unexpected_data")
        except BlockingIOError:
            pass
        except OSError as e:
            self.end(errname(e))

    def end(self, why):
        self.loop.drop(self.sock)
        self.sock.close()
        self.why, self.done = why, True

    def answer(self):
        line = "job=%s port=%s sent=%d received=%d sha=%s secs=%s" % (
            self.kind, getattr(self, "port", "-"), self.sent, self.received,
            self.h.hexdigest(), self.loop.secs(self))
        return ("ERR %s why=%s" % (line, self.why)) if self.why else "OK " + line

    def poll(self):
        return self.answer() if self.done else None

    def expire(self):
        if not self.done:
            self.end("TIMEOUT")
        return self.answer()


class Client:
    def __init__(self, args):
        self.loop = Loop()
        rng = random.Random(args.seed)
        payload = memoryview(rng.randbytes(ECHO_BLOCK))
        self.conns = []
        self.running = 0        # echo connections still moving bytes
        for _ in range(args.count):
            size = rng.randint(args.min, args.max)
            self.conns.append(EchoConn(self, size, rng.randrange(ECHO_BLOCK - size + 1),
                                       payload))
        self.up = stream_block(args.seed, "up")
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


class SinkConn:
    def __init__(self, server, sock):
        self.server, self.sock = server, sock
        self.received, self.h = 0, hashlib.sha256()
        server.loop.add(sock, READ, self.event)

    def event(self, mask):
        loop = self.server.loop
        try:
            n = self.sock.recv_into(loop.rbuf)
        except BlockingIOError:
            return
        except OSError as e:
            self.end(errname(e))
            return
        if n == 0:
            self.end(None)
            return
        self.h.update(loop.rview[:n])
        self.received += n

    def end(self, why):
        self.server.loop.drop(self.sock)
        self.sock.close()
        self.server.streams.append(("sink", self.received, self.h.hexdigest(), why))


class SourceConn:
    def __init__(self, server, sock):
        self.server, self.sock = server, sock
        self.sent, self.extra, self.h = 0, 0, hashlib.sha256()
        self.nbytes, self.block = server.source_bytes, server.down
        if self.nbytes:
            server.loop.add(sock, READ | WRITE, self.event)
        else:
            sock.shutdown(socket.SHUT_WR)
            server.loop.add(sock, READ, self.event)

    def event(self, mask):
        loop = self.server.loop
        try:
            if mask & WRITE:
                i = self.sent % STREAM_PERIOD
                n = self.sock.send(self.block[i:i + min(CHUNK, self.nbytes - self.sent)])
                self.h.update(self.block[i:i + n])
                self.sent += n
                if self.sent == self.nbytes:
                    self.sock.shutdown(socket.SHUT_WR)
                    loop.set(self.sock, READ, self.event)
            if mask & READ:
                n = self.sock.recv_into(loop.rbuf)
                if n == 0:
                    self.end(None if self.sent == self.nbytes else "eof_before_sent")
                    return
                self.extra += n
        except BlockingIOError:
            pass
        except OSError as e:
            self.end(errname(e))

    def end(self, why):
        self.server.loop.drop(self.sock)
        self.sock.close()
        if self.extra and not why:
            why = "unexpected_data"
        self.server.streams.append(("source", self.sent, self.h.hexdigest(), why))


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
        self.down = stream_block(args.seed, "down")
        self.echo_accepted = self.echo_closed = self.echo_bytes = 0
        self.echo_errors = []
        self.streams = []       # (kind, bytes, sha, why) of each ended stream connection
        for addr, conn in ((args.echo, EchoServerConn), (args.sink, SinkConn),
                           (args.source, SourceConn)):
            if addr:
                self.listen(addr, conn)
        out("READY")

    def listen(self, text, conn_class):
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
                if conn_class is EchoServerConn:
                    self.echo_accepted += 1
                conn_class(self, sock)
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
    side = Server(args) if (args.echo or args.sink or args.source) else Client(args)
    side.loop.run(side.command)


if __name__ == "__main__":
    main()
