#!/usr/bin/env python3
"""No admin client can hold, exhaust or fool the admin endpoint, and abusing it costs forwarding nothing: malformed, oversized and junk requests get a 4xx (never 200) or a close at once; hundreds of slowloris connections trickling a byte at a time are closed within the whole-request deadline or refused at the cap with a 503; clients that never read are let go; kaproxy's descriptors stay within the cap and return to their baseline; a proxied connection's ping-pong latency is unchanged meanwhile; the endpoint answers normally afterwards.

The raw requests and the slowloris connections come from this same script
run as a child inside the proxy namespace (--abuse-child raw|slow), which
prints what each connection saw as JSON; the parent judges it.
"""
import json
import os
import selectors
import socket
import statistics
import sys
import time

import lab

CAP = 16                 # admin_max_connections
REFUSE_LINGER = 8        # refused connections draining their client's last bytes (admin.c)
REQUEST_DEADLINE = 5.0   # a whole request head, from the accept (src/admin.c)
REPLY_DEADLINE = 10.0    # a reply, from its request to its last byte taken
N_SLOW = 300             # slowloris connections, far more than CAP
N_NOREAD = 3             # clients that send requests and never read (and one more
                         # connection trickles its second request after a reply)
TICK = 0.25              # each slowloris connection sends one byte per tick
RTT_SAMPLES = 25         # before the abuse, and at least as many during it
RTT_PACE = 0.1           # seconds between ping-pongs, so that they spread over the abuse
# A stall of kaproxy's forwarding loop would multiply the median round trip;
# the abuser's own CPU on this small machine may add a little to it.
RTT_RATIO, RTT_EXTRA_MS = 3.0, 5.0

# (what, raw request, statuses it may get).  None in the statuses: a close
# without an answer is also fine (libevent may reset a client still sending,
# and bytes that never end a line are closed at the deadline).  Heads that
# outgrow libevent's own bound (8 KiB) are refused by libevent: 400.
HUGE = 100000
RAW_CASES = [
    ("version HTTP/1.7", b"GET /healthz HTTP/1.7\r\nHost: 127.0.0.1:9901\r\n\r\n", {400}),
    ("version HTTP/2.0", b"GET /healthz HTTP/2.0\r\nHost: 127.0.0.1:9901\r\n\r\n", {400}),
    ("version HTTP/1.01", b"GET /healthz HTTP/1.01\r\nHost: 127.0.0.1:9901\r\n\r\n", {400}),
    ("version HTTP/0.9", b"GET /healthz\r\n\r\n", {400}),
    ("two spaces", b"GET  /healthz HTTP/1.1\r\nHost: 127.0.0.1:9901\r\n\r\n", {400}),
    ("absolute target", b"GET http://127.0.0.1:9901/healthz HTTP/1.1\r\nHost: 127.0.0.1:9901\r\n\r\n", {400}),
    ("bare LF", b"GET /healthz HTTP/1.1\nHost: 127.0.0.1:9901\n\n", {400}),
    ("folded header", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:9901\r\nX-A: b\r\n c\r\n\r\n", {400}),
    ("control byte in a header", b"GET /healthz HTTP/1.1\r\nHost: x\x01y\r\n\r\n", {400}),
    ("a body", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:9901\r\nContent-Length: 3\r\n\r\nabc", {400}),
    ("unknown method", b"BREW /healthz HTTP/1.1\r\nHost: 127.0.0.1:9901\r\n\r\n", {405}),
    ("POST /metrics", b"POST /metrics HTTP/1.1\r\nHost: 127.0.0.1:9901\r\nContent-Length: 0\r\n\r\n", {405}),
    ("unknown path", b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1:9901\r\n\r\n", {404}),
    ("query on /healthz", b"GET /healthz?verbose=1 HTTP/1.1\r\nHost: 127.0.0.1:9901\r\n\r\n", {400}),
    ("query on /metrics", b"GET /metrics?name=x HTTP/1.1\r\nHost: 127.0.0.1:9901\r\n\r\n", {400}),
    ("limit=+5", b"GET /connections?limit=+5 HTTP/1.1\r\nHost: 127.0.0.1:9901\r\n\r\n", {400}),
    ("limit twice", b"GET /connections?limit=5&limit=x HTTP/1.1\r\nHost: 127.0.0.1:9901\r\n\r\n", {400}),
    ("limit=0", b"GET /connections?limit=0 HTTP/1.1\r\nHost: 127.0.0.1:9901\r\n\r\n", {400}),
    ("unknown parameter", b"GET /connections?bogus=1 HTTP/1.1\r\nHost: 127.0.0.1:9901\r\n\r\n", {400}),
    ("bad listener", b"GET /connections?listener=%00 HTTP/1.1\r\nHost: 127.0.0.1:9901\r\n\r\n", {400}),
    ("bad escape", b"GET /connections?listener=%zz HTTP/1.1\r\nHost: 127.0.0.1:9901\r\n\r\n", {400}),
    ("target of 3000 bytes", b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: 127.0.0.1:9901\r\n\r\n", {414}),
    ("request line of 100 KB", b"GET /" + b"a" * HUGE, {400, 414, None}),
    ("headers of 6 KB", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:9901\r\nX-Big: " + b"x" * 6000 +
     b"\r\n\r\n", {431}),
    ("headers of 100 KB", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:9901\r\nX-Big: " + b"x" * HUGE +
     b"\r\n\r\n", {400, 431, None}),
    ("40 header lines", b"GET /healthz HTTP/1.1\r\n" +
     b"".join(b"X-%d: y\r\n" % i for i in range(40)) + b"\r\n", {431}),
    ("junk bytes", bytes((i * 131 + 7) % 256 for i in range(2000)) + b"\r\n\r\n", {400, None}),
    ("TLS ClientHello", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 64, {400, None}),
]
ACCEPTED = ("GET /healthz HTTP/1.1", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:9901\r\nConnection: close"
            b"\r\n\r\n", {200})


def admin_addr():
    host, port = lab.ADMIN_LISTEN.rsplit(":", 1)
    return host, int(port)


# --- the child, inside the proxy namespace ---------------------------------

def answer_complete(data):
    """Whether data holds a whole response (its head and Content-Length body)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return True


def read_answer(s, timeout):
    """(status or None, how the connection ended: EOF|RESET|TIMEOUT, bytes
    read, seconds to the answer or the end).  Once a whole answer is in, the
    close must follow within half a second (else TIMEOUT: kept open)."""
    t0 = time.monotonic()
    s.settimeout(timeout)
    data, how, answered = b"", "TIMEOUT", None
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                how = "EOF"
                break
            data += chunk
            if answered is None and answer_complete(data):
                answered = time.monotonic() - t0
                s.settimeout(0.5)
    except ConnectionResetError:
        how = "RESET"
    except socket.timeout:
        pass
    status = None
    if data.startswith(b"HTTP/1.") and len(data) >= 12:
        status = int(data[9:12])
    return status, how, len(data), answered if answered is not None else time.monotonic() - t0


def child_raw():
    out = []
    for what, raw, _ in RAW_CASES + [ACCEPTED]:
        s = socket.create_connection(admin_addr(), timeout=5)
        try:
            s.sendall(raw)
        except OSError:
            pass     # refused while still sending: what came back is read below
        status, how, n, secs = read_answer(s, REQUEST_DEADLINE + 3)
        out.append({"what": what, "status": status, "how": how, "bytes": n, "secs": secs})
        s.close()
    print(json.dumps(out), flush=True)


def child_slow(n_slow, n_noread, limit_s):
    """A kept-alive connection that trickles its second request, and
    never-readers (they take slots), then n_slow slowloris connections, each
    sending its request one byte per TICK; report when each one ended and
    how."""
    t0 = time.monotonic()
    kept = socket.create_connection(admin_addr(), timeout=5)
    kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:9901\r\n\r\n")
    asked = time.monotonic() - t0
    kept_status, kept_how, _, answered = read_answer(kept, 5)
    kept_replied = asked + answered
    noread = []
    for _ in range(n_noread):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        s.connect(admin_addr())
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9901\r\n\r\n" * 50)
        noread.append({"sock": s, "start": time.monotonic() - t0})
    slow = []
    sel = selectors.DefaultSelector()
    text = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:9901\r\nX-Slow: " + b"a" * 10000

    def ended(c, how):
        c["end"], c["how"] = time.monotonic() - t0, how
        if c["data"].startswith(b"HTTP/1.") and len(c["data"]) >= 12:
            c["status"] = int(c["data"][9:12])
        sel.unregister(c["sock"])
        c["sock"].close()

    def read_ends(timeout):
        # Each end is stamped when it is seen, so look often.
        for key, _ in sel.select(timeout=timeout):
            c = key.data
            try:
                chunk = c["sock"].recv(65536)
            except ConnectionResetError:
                ended(c, "RESET")
                continue
            except BlockingIOError:
                continue
            if chunk:
                c["data"] += chunk
            else:
                ended(c, "EOF")

    def trickle():
        for c in slow:
            if c["end"] is None and c["sent"] < len(text):
                try:
                    c["sock"].send(text[c["sent"]:c["sent"] + 1])
                    c["sent"] += 1
                except (BrokenPipeError, ConnectionResetError):
                    pass    # its end is read by read_ends

    def add(s, start):
        s.setblocking(False)
        c = {"sock": s, "start": start, "end": None, "how": None,
             "status": None, "data": b"", "sent": 0}
        slow.append(c)
        sel.register(s, selectors.EVENT_READ, c)
        return c

    kept_alive = add(kept, kept_replied)
    kept_alive.update(first_status=kept_status, first_how=kept_how)
    for i in range(n_slow):
        c = add(socket.create_connection(admin_addr(), timeout=5), time.monotonic() - t0)
        s = c["sock"]
        try:
            s.send(text[:1])
            c["sent"] = 1
        except (BrokenPipeError, ConnectionResetError):
            pass
        read_ends(0)
    next_tick = time.monotonic() + TICK
    while any(c["end"] is None for c in slow) and time.monotonic() - t0 < limit_s:
        if time.monotonic() >= next_tick:
            trickle()
            next_tick = time.monotonic() + TICK
        read_ends(max(0.0, min(0.05, next_tick - time.monotonic())))
    # The never-readers: once past the reply deadline, what kaproxy sent
    # them must end in a close.
    wait = max(n["start"] for n in noread) + REPLY_DEADLINE + lab.SLACK - (time.monotonic() - t0)
    if noread and wait > 0:
        time.sleep(wait)
    for n in noread:
        n["status"], n["how"], n["bytes"], _ = read_answer(n["sock"], 1.0)
        n["checked"] = time.monotonic() - t0
        n["sock"].close()
        del n["sock"]
    for c in slow:
        if c["end"] is None:
            c["sock"].close()
        del c["sock"], c["data"]
    print(json.dumps({"kept": slow[0], "slow": slow[1:], "noread": noread}), flush=True)


# --- the parent ------------------------------------------------------------

def spawn_child(t, mode):
    argv = [sys.executable, os.path.abspath(__file__), "--abuse-child", mode]
    return t.spawn("proxy", argv, "abuser-" + mode)


def child_result(t, child, timeout):
    lab.wait_until(lambda: not child.alive(), timeout, "%s to finish" % child.name, interval=0.1)
    t.check(child.popen.returncode == 0, "%s exits 0 (%s): %s" % (
        child.name, child.popen.returncode, child.stderr_text()))
    with open(child.out_path) as f:
        return json.loads(f.read())


def rtt_ms(t, cli, srv):
    """One 64-byte ping-pong through kaproxy, in milliseconds."""
    t0 = time.monotonic()
    t.exchange(cli, srv, 64)
    return (time.monotonic() - t0) * 1000


def check_raw(t, results):
    for (what, _, allowed), r in zip(RAW_CASES + [ACCEPTED], results):
        closed = None in allowed and r["status"] is None and r["how"] in ("EOF", "RESET")
        t.check(r["status"] in allowed or closed,
                "%s: answered %s (allowed %s), then %s after %.2fs" % (
                    what, r["status"], sorted(allowed, key=str), r["how"], r["secs"]))
        if r["status"] != 200:
            t.check(r["how"] in ("EOF", "RESET"), "%s: the connection ends with the refusal (%s)"
                    % (what, r["how"]))
    # An answer comes at once; a close without one at the request deadline.
    answered = [r["secs"] for r in results if r["status"] is not None]
    closed = [r["secs"] for r in results if r["status"] is None]
    t.check_within("the slowest of %d answers to malformed requests" % len(answered),
                   max(answered), 0.0, leg="client", situation="admin malformed request")
    if closed:
        t.check_within("the slowest of %d closes of bytes that never end a line" % len(closed),
                       max(closed), REQUEST_DEADLINE, leg="client",
                       situation="admin malformed request")


def check_slow(t, res):
    slow, noread, kept = res["slow"], res["noread"], res["kept"]
    t.check(kept["first_status"] == 200 and kept["first_how"] == "TIMEOUT",
            "a kept-alive connection got its 200 and stayed open (%s, %s)"
            % (kept["first_status"], kept["first_how"]))
    t.check(kept["end"] is not None and kept["how"] in ("EOF", "RESET"),
            "the kept-alive connection trickling its next request was closed by kaproxy (%s)"
            % kept["how"])
    t.check_within("a kept-alive connection trickling its next request closed, after its reply",
                   kept["end"] - kept["start"], REQUEST_DEADLINE,
                   lower_s=REQUEST_DEADLINE - 0.5, leg="client", situation="admin slowloris")
    refused = [c for c in slow if c["status"] == 503]
    held = [c for c in slow if c["status"] != 503]
    t.check(all(c["end"] is not None for c in slow),
            "every slowloris connection ended (%d still open)" %
            len([c for c in slow if c["end"] is None]))
    t.check(len(held) <= CAP, "at most %d slowloris connections were served (%d)" % (CAP, len(held)))
    t.check(len(refused) >= N_SLOW - CAP, "the rest were answered 503 (%d of %d)"
            % (len(refused), N_SLOW))
    worst_refusal = max(c["end"] - c["start"] for c in refused)
    t.check_within("a connection over admin_max_connections answered 503 and closed",
                   worst_refusal, 0.0, leg="client", situation="admin over the cap")
    t.check(all(c["how"] in ("EOF", "RESET") for c in held),
            "the held slowloris connections were closed by kaproxy (%s)"
            % sorted({c["how"] for c in held}))
    worst_hold = max(c["end"] - c["start"] for c in held)
    t.check_within("a slowloris connection trickling a byte every %.2fs closed" % TICK,
                   worst_hold, REQUEST_DEADLINE, lower_s=REQUEST_DEADLINE - 0.5, leg="client",
                   situation="admin slowloris")
    for n in noread:
        t.check(n["how"] in ("EOF", "RESET"),
                "a client that never reads is closed within the reply deadline (%s, %d bytes "
                "read at %.1fs)" % (n["how"], n["bytes"], n["checked"] - n["start"]))
    lab.log("slowloris: %d connections, %d held and closed at the deadline (worst %.2fs), "
            "%d answered 503 (worst %.3fs)" % (len(slow), len(held), worst_hold, len(refused),
                                                worst_refusal))


def main(t):
    started = time.monotonic()
    srv = t.server()
    px = t.start_kaproxy({"t": lab.listener(client=(30, 5, 3), upstream_policy=(30, 5, 3))},
                         {"admin_listen": lab.ADMIN_LISTEN, "admin_max_connections": str(CAP)})
    admin = lab.Admin(t)
    cli = t.pair(srv)
    t.check(admin.request("/healthz")[0] == 200, "/healthz answers before the abuse")
    before = []
    for _ in range(RTT_SAMPLES):
        before.append(rtt_ms(t, cli, srv))
        time.sleep(RTT_PACE)
    base = lab.proc_usage(px.pid)

    # Malformed, oversized and junk requests, one connection each.
    check_raw(t, child_result(t, spawn_child(t, "raw"), 60))

    # Slowloris and more connections than the cap, with ping-pong meanwhile.
    # Ping-pongs while the slowloris connections trickle and the
    # never-readers' pipelined scrapes are served (the first seconds);
    # descriptors as long as the abuser runs.
    child = spawn_child(t, "slow")
    abuse_start = time.monotonic()
    during, max_fds, last = [], 0, 0.0
    while child.alive() and time.monotonic() - started < 55:
        max_fds = max(max_fds, lab.proc_usage(px.pid)["fds"])
        now = time.monotonic()
        if now - last >= RTT_PACE and now - abuse_start < REQUEST_DEADLINE - 0.5:
            last = now
            during.append(rtt_ms(t, cli, srv))
        time.sleep(0.02)
    res = child_result(t, child, 30)
    check_slow(t, res)
    t.check(max_fds <= base["fds"] + CAP + REFUSE_LINGER + 1,
            "kaproxy's descriptors stayed within the cap: at most %d, baseline %d, cap %d, "
            "%d refused ones lingering" % (max_fds, base["fds"], CAP, REFUSE_LINGER))

    med_before, med_during = statistics.median(before), statistics.median(sorted(during))
    lab.log("ping-pong round trip: median %.2f ms before, %.2f ms during the abuse (%d and %d "
            "samples; max %.2f / %.2f ms)" % (med_before, med_during, len(before), len(during),
                                             max(before), max(during)))
    print("MEASURE ping-pong median before %.2f ms, during %.2f ms" % (med_before, med_during))
    t.check(len(during) >= RTT_SAMPLES, "ping-pong samples taken during the abuse (%d)"
            % len(during))
    t.check(med_during <= med_before * RTT_RATIO + RTT_EXTRA_MS,
            "forwarding latency unchanged by the abuse: median %.2f ms <= %.1f x %.2f + %.0f ms"
            % (med_during, RTT_RATIO, med_before, RTT_EXTRA_MS))

    # Under ASan freed memory stays in its quarantine, and TSan's shadow grows
    # with it: only descriptors tell there.
    with open("/proc/%d/maps" % px.pid) as f:
        maps = f.read()
    sanitized = "libasan" in maps or "libtsan" in maps
    lab.wait_back_to_baseline(px.pid, base, 64 * 1024 if sanitized else 1024,
                              timeout=REPLY_DEADLINE + lab.SLACK)
    code, body = admin.request("/healthz")
    t.check(code == 200 and body.strip() == "ok", "/healthz answers after the abuse (%s)" % code)
    m = admin.metrics()
    t.check(m["kaproxy_admin_connections_refused_total"] >= N_SLOW - CAP,
            "kaproxy_admin_connections_refused_total counts the refusals (%s)"
            % m["kaproxy_admin_connections_refused_total"])
    t.check(m["kaproxy_admin_deadline_closed_total"] >= 1,
            "kaproxy_admin_deadline_closed_total counts the slowloris closes (%s)"
            % m["kaproxy_admin_deadline_closed_total"])
    t.check(m['kaproxy_admin_requests_refused_total{code="400"}'] >= 15,
            "kaproxy_admin_requests_refused_total counts the 400s (%s)"
            % m['kaproxy_admin_requests_refused_total{code="400"}'])
    t.check(m["kaproxy_admin_connections"] == 1, "only this scrape's connection is open (%s)"
            % m["kaproxy_admin_connections"])
    t.exchange(cli, srv)
    t.close_pair(cli, srv)
    lab.log("runtime of the scenario: %.1fs" % (time.monotonic() - started))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--abuse-child":
        if sys.argv[2] == "raw":
            child_raw()
        else:
            child_slow(N_SLOW, N_NOREAD, REQUEST_DEADLINE + 4 * lab.SLACK)
        sys.exit(0)
    lab.run(main, __doc__)
