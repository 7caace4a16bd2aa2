#!/usr/bin/env python3
"""PROXY protocol against a real counterpart: HAProxy in front sending v1 and v2 headers to kaproxy (accept_proxy), whose access log then names the real client; kaproxy sending v1 and v2 headers (send_proxy) to HAProxy behind it (accept-proxy), which logs the real client; and a client that sends no header, a malformed one or a late one is reset with close_reason bad_proxy_header.

All in the proxy namespace except the peers:
  client --> HAProxy :7100 (send-proxy[-v2]) --> kaproxy 127.0.0.1:7200/7201 (accept_proxy) --> server
  client --> kaproxy :7000/:7001 (send_proxy v1/v2) --> HAProxy 127.0.0.1:7300 (accept-proxy) --> server
  client --> kaproxy :7002 (accept_proxy, timeout 1s) directly: no header, junk, late
"""
import os
import shutil
import signal

import lab

HAPROXY_CFG = """
global
    log stdout format raw local0
defaults
    mode tcp
    log global
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    log-format "seen client=%ci:%cp frontend=%ft"
    option logasap
frontend front_v1
    bind {pc}:7100
    default_backend to_kaproxy_v1
frontend front_v2
    bind {pc}:7101
    default_backend to_kaproxy_v2
backend to_kaproxy_v1
    server k 127.0.0.1:7200 send-proxy
backend to_kaproxy_v2
    server k 127.0.0.1:7201 send-proxy-v2
frontend behind
    bind 127.0.0.1:7300 accept-proxy
    default_backend to_server
backend to_server
    server s {srv}:7001
"""


# A client that sends a v1 header in three segments, the last carrying the
# start of the payload (1000 bytes of peer.py's client stream).
SPLIT_CLIENT = """
import socket, sys, time
sys.path.insert(0, %r)
from peer import C2S, stream_bytes
s = socket.create_connection((%r, 7002), timeout=5)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
header = b"PROXY TCP4 192.0.2.9 10.77.1.1 4242 7002\\r\\n"
payload = stream_bytes(C2S, 0, 1000)
s.sendall(header[:3]); time.sleep(0.2)
s.sendall(header[3:20]); time.sleep(0.2)
s.sendall(header[20:] + payload)
s.shutdown(socket.SHUT_WR)
print("sent")
"""


def start_haproxy(t):
    if not shutil.which("haproxy"):
        raise lab.Failure("haproxy is not installed (tools/install-deps.sh installs it)")
    path = os.path.join(t.dir, "haproxy.cfg")
    with open(path, "w") as f:
        f.write(HAPROXY_CFG.format(pc=lab.PROXY_CLIENT_IP, srv=lab.SERVER_IP))
    r = t.run("proxy", ["haproxy", "-c", "-f", path], check=False)
    if r.returncode != 0:
        raise lab.Failure("haproxy -c refused the config: %s" % r.stdout + r.stderr)
    h = t.spawn("proxy", ["haproxy", "-db", "-f", path], "haproxy")
    t.wait_listening(h, ["%s:7100" % lab.PROXY_CLIENT_IP, "%s:7101" % lab.PROXY_CLIENT_IP,
                         "127.0.0.1:7300"])
    return h


def haproxy_log(h):
    with open(h.out_path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def through(t, srv, target, name, n=100000):
    """A client through target; bytes both ways, then an orderly close.
    Returns the client's own address."""
    cli = t.pair(srv, target=target, name=name)
    addr = cli.ok("info")["local"]
    srv.ok("use %d" % cli.server_conn)
    t.both_ways(cli, srv, n)
    cli.ok("shutdown_wr")
    r = srv.cmd("wait_close 5", timeout=10)
    t.check(r.status == "EOF", "%s: the server sees the client's FIN (%s)" % (name, r))
    srv.ok("close")
    r = cli.cmd("wait_close 5", timeout=10)
    t.check(r.status == "EOF", "%s: orderly end (%s)" % (name, r))
    cli.ok("close")
    return addr


def main(t):
    srv = t.server(backlog=32)
    up = "%s:7001" % lab.SERVER_IP
    t.start_kaproxy({
        "acc1": lab.listener(listen="127.0.0.1:7200", upstream=up, accept_proxy="on"),
        "acc2": lab.listener(listen="127.0.0.1:7201", upstream=up, accept_proxy="on"),
        "send1": lab.listener(listen="%s:7000" % lab.PROXY_CLIENT_IP, upstream="127.0.0.1:7300",
                              send_proxy="v1"),
        "send2": lab.listener(listen="%s:7001" % lab.PROXY_CLIENT_IP, upstream="127.0.0.1:7300",
                              send_proxy="v2"),
        "strict": lab.listener(listen="%s:7002" % lab.PROXY_CLIENT_IP, upstream=up,
                               accept_proxy="on", accept_proxy_timeout="1s"),
    })
    h = start_haproxy(t)

    # HAProxy in front: kaproxy logs the client HAProxy names, not HAProxy.
    for version, port, name in ((1, 7100, "acc1"), (2, 7101, "acc2")):
        addr = through(t, srv, "%s:%d" % (lab.PROXY_CLIENT_IP, port), "front-v%d" % version)
        rec = t.access_log.of(name, 10)
        t.check_closed(rec, "client_fin", "none",
                       bytes_from_client=100000, bytes_to_client=100000)
        t.check(rec["client"] == addr, "v%d from HAProxy: kaproxy logs the real client %s (got %s)"
                % (version, addr, rec["client"]))

    # HAProxy behind: it learns the real client from kaproxy's header.
    for version, port in ((1, 7000), (2, 7001)):
        addr = through(t, srv, "%s:%d" % (lab.PROXY_CLIENT_IP, port), "behind-v%d" % version)
        rec = t.access_log.of("send%d" % version, 10)
        t.check_closed(rec, "client_fin", "none",
                       bytes_from_client=100000, bytes_to_client=100000)
        want = "seen client=%s frontend=behind" % addr
        lab.wait_until(lambda: want in haproxy_log(h), 5,
                       "HAProxy to log %r" % want)
        t.check(True, "v%d to HAProxy: it saw the real client %s" % (version, addr))

    # A header split over three segments, the payload in the same segment as
    # its end: the named client is logged, and not one payload byte is lost.
    strict = "%s:7002" % lab.PROXY_CLIENT_IP
    script = SPLIT_CLIENT % (os.path.dirname(lab.PEER), lab.PROXY_CLIENT_IP)
    srv.submit("accept 5")
    r = t.run("client", ["python3", "-c", script], timeout=20)
    t.check(r.stdout.strip() == "sent", "split header: the client sent it (%s)" % r.stdout.strip())
    conn = srv.reply(10)
    srv.ok("use %s" % conn["conn"])
    got = srv.ok("expect 1000 5")
    t.check(got["got"] == "1000", "split header: the server got the payload whole, in order")
    srv.ok("close")
    rec = t.access_log.of("strict", 5, client="192.0.2.9:4242")
    t.check(rec["bytes_from_client"] == 1000, "split header: the header is not counted as payload")

    # No header, a malformed one, a late one: reset, bad_proxy_header.
    cases = (
        ("junk", "send 64", "Protocol error"),
        ("silent", None, "Connection timed out"),
        ("closed", "shutdown_wr", "No data available"),
    )
    for label, action, detail in cases:
        cli = t.client("bad-%s" % label)
        cli.ok("connect %s 5" % strict)
        addr = cli.ok("info")["local"]
        if action:
            cli.ok(action)
        rec = t.access_log.of("strict", 5, client=addr)
        t.check_closed(rec, "bad_proxy_header", "rst")
        t.check(rec["detail"] == detail, "%s: detail %r (got %r)" % (label, detail, rec.get("detail")))
        t.check(rec["upstream"] == "", "%s: no upstream was tried" % label)
        r = cli.cmd("wait_close 5", timeout=10)
        t.check(r.status == "RESET", "%s: the client is reset (%s)" % (label, r))
    t.check(srv.cmd("accept 1", timeout=5).status == "ERR",
            "no refused client ever reached the server")
    h.stop(signal.SIGTERM)


if __name__ == "__main__":
    lab.run(main, __doc__)
