"""
peer: one end of a TCP conversation, run inside a namespace by lab.py and
driven line by line over stdin; every command gets exactly one answer line
on stdout, "STATUS key=value ...", so the harness can assert what this
socket observed (all bytes, then an orderly EOF, or an RST).

Start:  peer.py                       client role: prints "READY"
        peer.py --listen IP:PORT      server role: listens, prints "READY listen=IP:PORT"

Commands (T = timeout in seconds, default 10):
  connect IP:PORT [T]  -> OK local=.. peer=..   | ERR errno=NAME
  accept [T]           -> OK conn=N peer=..     | ERR TIMEOUT   (server; becomes current)
  use N                -> OK conn=N             (switch the current connection)
  send N [T]           -> OK sent=N sha=..      | ERR sent=K errno=NAME|TIMEOUT
  expect N [T]         -> OK got=N sha=..       | ERR got=K why=EOF|RESET|TIMEOUT|MISMATCH|errno
  shutdown_wr          -> OK                    (shutdown(SHUT_WR): send FIN, keep reading)
  wait_close [T]       -> EOF|RESET|TIMEOUT|ERROR extra=K ms=M [errno=NAME]
                          (reads until end of stream; extra = bytes that still arrived,
                          M = milliseconds from the command to the end)
  close                -> OK                    (close(): FIN, or RST if data is unread)
  rst_close            -> OK                    (SO_LINGER {1,0} then close(): RST)
  rcvbuf N             -> OK rcvbuf=K           (SO_RCVBUF N: a window that stays small,
                          so a peer that does not read holds the sender back at once)
  info                 -> OK local=.. peer=.. sent=.. received=..
  quit                 -> OK, exits

Sent bytes follow a deterministic stream pattern (its own per direction),
so "expect" verifies content and order, not just the count, and both sides
print the SHA-256 of what they sent/received for the harness to compare.
"""

import argparse
import errno
import hashlib
import select
import socket
import struct
import sys
import time

PERIOD = 65521  # prime, so misplaced power-of-two sized chunks never line up


def pattern(direction):
    return hashlib.shake_256(direction.encode()).digest(PERIOD)


C2S, S2C = pattern("client-to-server"), pattern("server-to-client")


def stream_bytes(base, offset, n):
    out = bytearray()
    while n:
        i = offset % PERIOD
        chunk = base[i:i + n]
        out += chunk
        offset += len(chunk)
        n -= len(chunk)
    return bytes(out)


def errname(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__


class Conn:
    def __init__(self, sock, send_base, recv_base):
        self.sock = sock
        self.send_base, self.recv_base = send_base, recv_base
        self.sent = 0
        self.received = 0


def parse_endpoint(text):
    """'1.2.3.4:5' or '[v6]:5' -> (family, (host, port))."""
    host, port = text.rsplit(":", 1)
    if host.startswith("[") and host.endswith("]"):
        return socket.AF_INET6, (host[1:-1], int(port))
    return socket.AF_INET, (host, int(port))


def fmt_endpoint(addr):
    """A socket address tuple as '1.2.3.4:5' or '[v6]:5'."""
    return ("[%s]:%d" if ":" in addr[0] else "%s:%d") % (addr[0], addr[1])


class PeerProc:
    def __init__(self, listen, backlog):
        self.conns = []
        self.cur = None
        self.lsock = None
        if listen:
            family, addr = parse_endpoint(listen)
            self.lsock = socket.socket(family, socket.SOCK_STREAM)
            self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.lsock.bind(addr)
            self.lsock.listen(backlog)
            self.send_base, self.recv_base = S2C, C2S
            out("READY listen=%s" % listen)
        else:
            self.send_base, self.recv_base = C2S, S2C
            out("READY")

    def conn(self):
        if self.cur is None:
            raise UsageError("no connection")
        return self.cur

    # -- commands ------------------------------------------------------------

    def do_connect(self, target, t="10"):
        family, addr = parse_endpoint(target)
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(float(t))
        try:
            s.connect(addr)
        except socket.timeout:
            s.close()
            return "ERR errno=TIMEOUT"
        except OSError as e:
            s.close()
            return "ERR errno=%s" % errname(e)
        self.cur = Conn(s, self.send_base, self.recv_base)
        self.conns.append(self.cur)
        return "OK local=%s peer=%s" % (fmt_endpoint(s.getsockname()), fmt_endpoint(s.getpeername()))

    def do_accept(self, t="10"):
        if not self.lsock:
            raise UsageError("not listening")
        self.lsock.settimeout(float(t))
        try:
            s, addr = self.lsock.accept()
        except socket.timeout:
            return "ERR why=TIMEOUT"
        self.cur = Conn(s, self.send_base, self.recv_base)
        self.conns.append(self.cur)
        return "OK conn=%d peer=%s" % (len(self.conns) - 1, fmt_endpoint(addr))

    def do_use(self, n):
        self.cur = self.conns[int(n)]
        return "OK conn=%s" % n

    def do_send(self, n, t="10"):
        c = self.conn()
        n = int(n)
        data = stream_bytes(c.send_base, c.sent, n)
        c.sock.settimeout(float(t))
        done = 0
        try:
            view = memoryview(data)
            while done < n:
                done += c.sock.send(view[done:done + 262144])
        except socket.timeout:
            c.sent += done
            return "ERR sent=%d errno=TIMEOUT" % done
        except OSError as e:
            c.sent += done
            return "ERR sent=%d errno=%s" % (done, errname(e))
        c.sent += done
        return "OK sent=%d sha=%s" % (done, hashlib.sha256(data).hexdigest()[:16])

    def do_expect(self, n, t="10"):
        c = self.conn()
        n = int(n)
        deadline = time.monotonic() + float(t)
        buf = bytearray()
        why = None
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                why = "TIMEOUT"
                break
            c.sock.settimeout(left)
            try:
                chunk = c.sock.recv(min(262144, n - len(buf)))
            except socket.timeout:
                why = "TIMEOUT"
                break
            except ConnectionResetError:
                why = "RESET"
                break
            except OSError as e:
                why = errname(e)
                break
            if not chunk:
                why = "EOF"
                break
            buf += chunk
        want = stream_bytes(c.recv_base, c.received, len(buf))
        if buf != want:
            bad = next(i for i in range(len(buf)) if buf[i] != want[i])
            c.received += len(buf)
            return "ERR got=%d why=MISMATCH at=%d" % (len(buf), c.received - len(buf) + bad)
        c.received += len(buf)
        sha = hashlib.sha256(buf).hexdigest()[:16]
        if why:
            return "ERR got=%d why=%s sha=%s" % (len(buf), why, sha)
        return "OK got=%d sha=%s" % (n, sha)

    def do_shutdown_wr(self):
        self.conn().sock.shutdown(socket.SHUT_WR)
        return "OK"

    def do_wait_close(self, t="10"):
        c = self.conn()
        start = time.monotonic()
        deadline = start + float(t)
        extra = 0

        def end(what):
            return "%s extra=%d ms=%d" % (what, extra, (time.monotonic() - start) * 1000)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return end("TIMEOUT")
            r, _, _ = select.select([c.sock], [], [], left)
            if not r:
                continue
            try:
                chunk = c.sock.recv(262144)
            except ConnectionResetError:
                return end("RESET") + " errno=ECONNRESET"
            except OSError as e:
                return end("ERROR") + " errno=%s" % errname(e)
            if not chunk:
                return end("EOF")
            extra += len(chunk)
            c.received += len(chunk)

    def do_close(self):
        self.conn().sock.close()
        return "OK"

    def do_rst_close(self):
        s = self.conn().sock
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        return "OK"

    def do_rcvbuf(self, n):
        s = self.conn().sock
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, int(n))
        return "OK rcvbuf=%d" % s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)

    def do_info(self):
        c = self.conn()
        try:
            local = fmt_endpoint(c.sock.getsockname())
            peer = fmt_endpoint(c.sock.getpeername())
        except OSError as e:
            local = peer = errname(e)
        return "OK local=%s peer=%s sent=%d received=%d" % (local, peer, c.sent, c.received)

    def do_quit(self):
        out("OK")
        sys.exit(0)


class UsageError(Exception):
    pass


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen")
    ap.add_argument("--backlog", type=int, default=16)
    args = ap.parse_args()
    p = PeerProc(args.listen, args.backlog)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        fn = getattr(p, "do_" + words[0], None)
        if fn is None:
            out("ERR unknown=%s" % words[0])
            continue
        try:
            out(fn(*words[1:]))
        except (UsageError, TypeError, ValueError, IndexError) as e:
            out("ERR usage=%s" % str(e).replace(" ", "_"))


if __name__ == "__main__":
    main()
