"""
situations: every way the kernel can show a peer failing, on either leg,
run against the real kaproxy and proved on the wire.  Shared by scenarios
30-35 and tools/kaproxy-lab.

    normal       probes at the configured idle, SEG.SEQ = SND.NXT - 1, no
                 payload, each answered; the connection then carries data
    powered-off  the peer's namespace drops everything: `count` probes spaced
                 by `interval`, *_timeout at idle + interval*count, RST to
                 the other peer (socket: ECONNRESET; wire: kaproxy's RST)
    rebooted     the peer comes back without state: it answers the next
                 probe with RST, *_reset, RST to the other peer
    killed       kill -9 of the peer process: its kernel sends FIN after all
                 bytes, *_fin, the FIN is forwarded after all bytes, orderly
    path-broken  keepalive off on the leg, data in flight, path dropped:
                 retransmissions until TCP_USER_TIMEOUT, *_timeout, RST
    nat-expiry   (client leg, NAT lab) a NAT forgets an idle flow: without
                 keepalive data never arrives again; with keepalive idle
                 below the NAT timeout the flow outlives several timeouts

Each situation function takes the lab and the legs to check, starts its own
kaproxy, and raises lab.Failure on the first broken promise.  Every wire
assertion reads a dumpcap capture of the proxy namespace (both veths), so
what is asserted is what left and reached kaproxy's host.  t.story collects
a short account (access-log lines, what each peer saw) for kaproxy-lab.
"""

import json
import os
import subprocess
import time

import lab

LEGS = ("client", "upstream")
SITUATIONS = ("normal", "powered-off", "rebooted", "killed", "path-broken", "nat-expiry")
PEER_ROLE = {"client": "client", "upstream": "server"}
OTHER = {"client": "upstream", "upstream": "client"}
SERVER_PORT = 7001
# One listener per leg under test, so each leg's policy can differ from the
# other leg's (a value applied to the wrong socket then breaks a bound).
LISTEN_PORT = {"client": 7000, "upstream": 7010}
NAME = {"client": "c", "upstream": "u"}
FAIL_POLICY = (2, 1, 2)      # the leg under test: bound 4 s, probes at 2 and 3 s
CALM_POLICY = (3, 1, 3)      # the other leg
USER_TIMEOUT = 3             # path-broken: keepalive off, TCP_USER_TIMEOUT 3 s
NAT_TIMEOUT = 6              # nat-expiry: conntrack established timeout in the NAT
NAT_KEEPALIVE = (2, 1, 2)    # nat-expiry, kept-alive listener: idle 2 s < 6 s


# --- a short account of what happened (printed by kaproxy-lab) -------------

def note(t, who, text):
    if not hasattr(t, "story"):
        t.story = []
    t.story.append((who, text))
    lab.log("%s: %s" % (who, text))


# --- connections ----------------------------------------------------------------

class Conn:
    """A client connected through listener `name` and the server's accepted
    end, with the addresses both legs have as seen in the proxy namespace."""

    def __init__(self, t, srv, leg_name, port, cname):
        self.t, self.srv = t, srv
        self.listener, self.port = leg_name, port
        self.cli = t.client(cname)
        r = self.cli.ok("connect %s:%d 5" % (lab.PROXY_CLIENT_IP, port))
        self.cli_local = r["local"]
        a = srv.ok("accept 5")
        self.srv_conn = int(a["conn"])
        self.up_port = int(a["peer"].rsplit(":", 1)[1])
        self.client_addr = self._client_as_proxy_sees()
        self.sent = {"client": 0, "upstream": 0}   # bytes each peer sent
        lab.log("connection on %s: client leg %s:%d <-> %s:%d, upstream leg %s:%d <-> %s:%d"
                % (leg_name, lab.PROXY_CLIENT_IP, port, self.client_addr[0], self.client_addr[1],
                   lab.PROXY_SERVER_IP, self.up_port, lab.SERVER_IP, SERVER_PORT))

    def _client_as_proxy_sees(self):
        """(ip, port) of the client on kaproxy's accepted socket (behind a NAT
        the port may be rewritten)."""
        want_port = int(self.cli_local.rsplit(":", 1)[1])
        local = "%s:%d" % (lab.PROXY_CLIENT_IP, self.port)

        def find():
            cands = [s["remote"] for s in self.t.proxy_sockets()
                     if s["local"] == local and s["state"] == "ESTABLISHED"]
            for c in cands:
                if int(c.rsplit(":", 1)[1]) == want_port:
                    return c
            return cands[0] if len(cands) == 1 else None
        remote = lab.wait_until(find, 5, "kaproxy's accepted socket for %s" % self.cli_local)
        ip, port = remote.rsplit(":", 1)
        return ip, int(port)

    def peer(self, leg):
        return self.cli if leg == "client" else self.srv

    def do(self, leg, line, timeout=15.0):
        """A command on leg's peer (the server switched to this connection)."""
        if leg == "upstream":
            self.srv.ok("use %d" % self.srv_conn)
        return self.peer(leg).cmd(line, timeout)

    def ok(self, leg, line, timeout=15.0):
        r = self.do(leg, line, timeout)
        if r.status != "OK":
            raise lab.Failure("%s peer: %r answered %r" % (leg, line, r.raw))
        return r

    def submit(self, leg, line):
        """Send a command to leg's peer without waiting (reply() later)."""
        if leg == "upstream":
            self.srv.ok("use %d" % self.srv_conn)
        self.peer(leg).submit(line)

    def send(self, leg, n):
        r = self.ok(leg, "send %d 10" % n)
        self.sent[leg] += n
        return r

    def exchange(self, n=1000):
        """n bytes client -> server, then n bytes server -> client."""
        self.send("client", n)
        self.ok("upstream", "expect %d" % n)
        self.send("upstream", n)
        self.ok("client", "expect %d" % n)

    def counts(self):
        """The byte counts its access-log line must show."""
        return {"bytes_from_client": self.sent["client"], "bytes_to_client": self.sent["upstream"]}

    def record(self, timeout):
        """This connection's access-log line."""
        return self.t.access_log.of(self.listener, timeout, client="%s:%d" % self.client_addr)

    def still_open(self):
        """No access-log line for this connection yet."""
        return not self.t.access_log.closed(self.listener, client="%s:%d" % self.client_addr)

    def ends(self, leg, timeout):
        """While the peer of the other leg waits for its connection to end,
        this connection's access-log line: (record, that peer's answer)."""
        other = OTHER[leg]
        self.submit(other, "wait_close %d" % timeout)
        rec = self.record(timeout)
        r = self.peer(other).reply(timeout + 5)
        log_record(self.t, rec)
        note(self.t, PEER_ROLE[other], "wait_close -> %s" % r.raw)
        return rec, r

    def streams(self, pkts):
        """{leg: Stream} of this connection in a proxy-namespace capture."""
        return {
            "client": Stream(pkts, (lab.PROXY_CLIENT_IP, self.port), self.client_addr, "client leg"),
            "upstream": Stream(pkts, (lab.PROXY_SERVER_IP, self.up_port),
                               (lab.SERVER_IP, SERVER_PORT), "upstream leg"),
        }


def log_record(t, rec):
    line = json.dumps({k: v for k, v in rec.items() if k != "_seen"})
    note(t, "access log", line)


# --- the wire ---------------------------------------------------------------------

class Stream:
    """One TCP connection in a capture, from the proxy's side: each packet
    gets out (sent by kaproxy's host), rseq/rack (relative to the ISNs) and,
    for sent packets, nxt (SND.NXT just before it, relative)."""

    def __init__(self, pkts, proxy, peer, name):
        self.name = name
        self.proxy, self.peer = proxy, peer
        self.pkts = []
        for p in pkts:
            a, b = (p["src"], p["sport"]), (p["dst"], p["dport"])
            if a == proxy and b == peer:
                self.pkts.append(dict(p, out=True))
            elif a == peer and b == proxy:
                self.pkts.append(dict(p, out=False))
        isn = {}
        for p in self.pkts:
            if p["syn"]:
                isn.setdefault(p["out"], p["seq"])
        nxt = {True: 0, False: 0}
        for p in self.pkts:
            d = p["out"]
            if d not in isn or (not d) not in isn:
                raise lab.Failure("%s: the capture lacks the handshake" % name)
            p["rseq"] = (p["seq"] - isn[d]) % (1 << 32)
            p["rack"] = (p["ack"] - isn[not d]) % (1 << 32) if p["ackf"] else None
            p["nxt"] = nxt[d]
            nxt[d] = max(nxt[d], p["rseq"] + p["len"] + p["syn"] + p["fin"])

    def sent(self, after=0.0):
        return [p for p in self.pkts if p["out"] and p["t"] > after]

    def received(self, after=0.0):
        return [p for p in self.pkts if not p["out"] and p["t"] > after]

    def last_received_before(self, when):
        ps = [p for p in self.pkts if not p["out"] and p["t"] < when]
        return ps[-1] if ps else None

    def last_data(self, before=float("inf")):
        ps = [p for p in self.pkts if p["len"] > 0 and p["t"] < before]
        return ps[-1]["t"] if ps else self.pkts[0]["t"]

    def rsts(self, out, after=0.0):
        return [p for p in self.pkts if p["rst"] and p["out"] == out and p["t"] > after]

    def fins(self, out):
        return [p for p in self.pkts if p["fin"] and p["out"] == out]

    def idle_segments(self, after, before=float("inf")):
        """Everything kaproxy's host sent on this leg between after and
        before that is neither data nor SYN/FIN/RST: on an idle leg, only
        keepalive probes."""
        return [p for p in self.pkts if p["out"] and after < p["t"] < before and p["len"] == 0
                and not (p["syn"] or p["fin"] or p["rst"])]

    def probes(self, out=True):
        """The keepalive probes sent (out) or received on this leg."""
        return [p for p in self.pkts if p["out"] == out and is_probe(p)]

    def answer_to(self, probe, within=1.0):
        """The first packet from the peer after probe, if within seconds."""
        for p in self.pkts:
            if not p["out"] and p["t"] >= probe["t"]:
                return p if p["t"] - probe["t"] <= within else None
        return None

    def summary(self, after=0.0):
        out = []
        for p in self.pkts:
            if p["t"] < after:
                continue
            flags = "".join(f for f, k in (("S", "syn"), ("F", "fin"), ("R", "rst"), (".", "ackf")) if p[k])
            out.append("%.3f %s %s:%d > %s:%d [%s] seq=%d ack=%s len=%d%s" % (
                p["t"], "->" if p["out"] else "<-", p["src"], p["sport"], p["dst"], p["dport"],
                flags, p["rseq"], p["rack"], p["len"],
                "  (probe: SND.NXT-1)" if p["out"] and is_probe(p) else ""))
        return out


def is_probe(p):
    """A keepalive probe: no payload, no SYN/FIN/RST, SEG.SEQ = SND.NXT - 1."""
    return (p["len"] == 0 and p["rseq"] == p["nxt"] - 1
            and not (p["syn"] or p["fin"] or p["rst"]))


def start_capture(t):
    cap = t.capture("tcp", "proxy")
    if cap is None:
        raise lab.Failure("tshark and dumpcap are needed to check the wire")
    return cap


def print_streams(t, streams, after=0.0):
    for leg in LEGS:
        s = streams[leg]
        lines = s.summary(after)
        print("---- wire, %s (%s:%d <-> %s:%d), from %.3f" % (
            s.name, s.proxy[0], s.proxy[1], s.peer[0], s.peer[1], after))
        print("\n".join(lines) if lines else "(nothing)")
    print("----", flush=True)


def idle_probes(t, s, leg, after, before=float("inf"), count=None, at_least=1):
    """The probe test: every segment kaproxy sent on leg (stream s) while it
    was idle, between after and before, is a keepalive probe, and there are
    exactly count of them (or at least at_least).  Returns them in order."""
    segs = s.idle_segments(after, before)
    t.check(all(is_probe(p) for p in segs), "%s leg: all %d idle segments from the proxy are "
            "keepalive probes (len 0, SEG.SEQ = SND.NXT - 1; seq/SND.NXT %s)"
            % (leg, len(segs), ", ".join("%d/%d" % (p["rseq"], p["nxt"]) for p in segs[:6])))
    if count is not None:
        t.check(len(segs) == count, "%s leg: %d unanswered probes = keepalive_count %d"
                % (leg, len(segs), count))
    else:
        t.check(len(segs) >= at_least, "%s leg: keepalive probes: %d (want >= %d)"
                % (leg, len(segs), at_least))
    return segs


def kaproxy_rst(t, o, other, after, since):
    """kaproxy's first RST on the other leg (stream o) after `after`, with
    nothing (no data, no FIN) sent on that leg between since and it."""
    rsts = o.rsts(True, after)
    t.check(rsts, "%s leg: kaproxy's RST to the %s on the wire" % (other, PEER_ROLE[other]))
    before = [p for p in o.sent(since) if p["t"] < rsts[0]["t"] and (p["len"] or p["fin"])]
    t.check(not before, "%s leg: nothing (no data, no FIN) sent before that RST" % other)
    return rsts[0]


def reset_verdict(t, c, leg, rec, r, reason):
    """c's record says the leg's peer is gone (reason), teardown rst, every
    byte counted; the other peer's socket sees ECONNRESET."""
    t.check_closed(rec, "%s_%s" % (leg, reason), "rst", **c.counts())
    t.check(r.status == "RESET" and r.get("errno") == "ECONNRESET",
            "the %s peer's socket sees ECONNRESET (got %s)" % (PEER_ROLE[OTHER[leg]], r))


# --- kaproxy configurations -------------------------------------------------------

def policy(leg, side, fail_policy=FAIL_POLICY):
    return fail_policy if leg == side else CALM_POLICY


def per_leg_listeners(extra=None):
    """Listener c (port 7000) has the short policy on the client leg,
    listener u (port 7010) on the upstream leg."""
    out = {}
    for leg in LEGS:
        keys = lab.listener(listen="%s:%d" % (lab.PROXY_CLIENT_IP, LISTEN_PORT[leg]),
                            upstream="%s:%d" % (lab.SERVER_IP, SERVER_PORT),
                            client=policy(leg, "client"), upstream_policy=policy(leg, "upstream"))
        keys.update((extra or {}).get(leg, {}))
        out[NAME[leg]] = keys
    return out


def alive_server(t):
    srv = getattr(t, "srv", None)
    if srv is None or not srv.alive():
        t.srv = t.server()
    return t.srv


def each_leg(t, legs, leg_fn, extra=None):
    """kaproxy with per_leg_listeners(extra), then leg_fn(t, leg) per leg."""
    t.start_kaproxy(per_leg_listeners(extra))
    for leg in legs:
        leg_fn(t, leg)


def watched_conn(t, leg):
    """A capture of the proxy namespace, and a fresh connection through the
    listener whose leg `leg` has the short policy."""
    cap = start_capture(t)
    return cap, Conn(t, alive_server(t), NAME[leg], LISTEN_PORT[leg], "client-%s" % leg)


# --- 1. normal ----------------------------------------------------------------------

NORMAL = {"client": (2, 1, 3), "upstream": (3, 1, 3)}
NORMAL_WATCH = 6.6   # client probes at ~2, 4, 6 s; upstream at ~3, 6 s


def normal(t, legs=LEGS):
    """Both legs idle on one connection; the probes of each leg on the wire."""
    t.start_kaproxy({"n": lab.listener(client=NORMAL["client"], upstream_policy=NORMAL["upstream"])})
    cap = start_capture(t)
    c = Conn(t, alive_server(t), "n", 7000, "client")
    c.exchange()
    start = time.time()
    note(t, "harness", "both legs idle for %.1fs (client policy %s, upstream %s)"
         % (NORMAL_WATCH, NORMAL["client"], NORMAL["upstream"]))
    # Waiting for the keepalive timers is the point here.
    time.sleep(NORMAL_WATCH)
    t.check(c.still_open(), "no access-log line: the connection is still up after %.1fs idle"
            % NORMAL_WATCH)
    c.exchange(2000)
    note(t, "client", "received 1000 + 2000 bytes, all verified")
    note(t, "server", "received 1000 + 2000 bytes, all verified")
    streams = c.streams(cap.packets())
    print_streams(t, streams, start - 0.5)
    for leg in legs:
        s = streams[leg]
        idle, intvl, cnt = NORMAL[leg]
        quiet = s.last_data(start) + 0.5   # past any delayed ACK of the last data
        probes = idle_probes(t, s, leg, quiet, start + NORMAL_WATCH,
                             at_least=int((NORMAL_WATCH - 0.4) // idle))
        answers = []
        for p in probes:
            a = s.answer_to(p)
            t.check(a is not None and a["ackf"] and a["len"] == 0 and a["rack"] == p["nxt"]
                    and not a["rst"], "%s leg: the probe at %.3f is answered by an ACK of SND.NXT "
                    "(%s)" % (leg, p["t"], a and "ack %s after %.1fms" % (a["rack"], 1000 * (a["t"] - p["t"]))))
            answers.append(a)
        t.check(not s.probes(out=False), "%s leg: the probes are kaproxy's (the peer sends none)"
                % leg)
        last_in = s.last_received_before(probes[0]["t"])
        t.check_within("%s leg: first keepalive probe after the last segment received (wire)" % leg,
                       probes[0]["t"] - last_in["t"], idle, lab.timer_slack(idle),
                       lower_s=idle - 0.05, leg=leg, situation="normal: first probe")
        # An answered probe refreshes the receive timestamp: the next one
        # comes `idle` after that ACK (interval applies only while unanswered).
        gaps = [probes[i + 1]["t"] - answers[i]["t"] for i in range(len(probes) - 1)]
        t.check(min(gaps) >= idle - 0.05, "%s leg: no probe earlier than idle after the previous "
                "answer (gaps %s)" % (leg, ", ".join("%.3f" % g for g in gaps)))
        t.check_within("%s leg: next probe after the previous probe's ACK, longest (wire)" % leg,
                       max(gaps), idle, lab.timer_slack(idle), lower_s=idle - 0.05,
                       leg=leg, situation="normal: probe spacing")
        note(t, "wire", "%s leg: %d probes, first %.3fs after the last segment, then every %s s "
             "(each after the ACK), all answered" % (leg, len(probes), probes[0]["t"] - last_in["t"],
                                                    "/".join("%.2f" % g for g in gaps)))


# --- 2. powered off -------------------------------------------------------------------

def powered_off(t, legs=LEGS):
    each_leg(t, legs, _powered_off_leg)


def _powered_off_leg(t, leg):
    other, role = OTHER[leg], PEER_ROLE[leg]
    idle, intvl, cnt = FAIL_POLICY
    bound = lab.worst_case_s(FAIL_POLICY)
    cap, c = watched_conn(t, leg)
    c.exchange()
    dropped = t.drop_all(role)
    note(t, "harness", "%s namespace drops everything (powered off)" % role)
    rec, r = c.ends(leg, bound + 10)
    pkts = cap.packets()
    c.peer(leg).stop()   # the "powered off" peer's process has no further part
    t.undrop(role)
    reset_verdict(t, c, leg, rec, r, "timeout")
    t.check_within("%s powered off: DROP -> access-log line" % leg, rec["_seen"] - dropped,
                   bound, lower_s=idle, leg=leg, situation="powered-off")
    t.check_within("%s powered off: detect_ms (last segment from the peer -> declared dead)" % leg,
                   rec["detect_ms"] / 1000.0, bound, lower_s=idle, leg=leg,
                   situation="powered-off: detect_ms")

    streams = c.streams(pkts)
    print_streams(t, streams, dropped - 0.5)
    s, o = streams[leg], streams[other]
    last_in = s.last_received_before(rec["_seen"])
    t.check(last_in["t"] < dropped + 0.05, "%s leg: nothing from the peer after the DROP" % leg)
    probes = idle_probes(t, s, leg, max(s.last_data() + 0.5, dropped), count=cnt)
    t.check_within("%s leg: first probe after the last segment received (wire)" % leg,
                   probes[0]["t"] - last_in["t"], idle, lab.timer_slack(idle),
                   lower_s=idle - 0.05, leg=leg, situation="powered-off: first probe")
    gaps = [b["t"] - a["t"] for a, b in zip(probes, probes[1:])]
    t.check(all(intvl - 0.05 <= g <= intvl + lab.timer_slack(intvl) for g in gaps),
            "%s leg: unanswered probes spaced by the interval %ds (%s)"
            % (leg, intvl, ", ".join("%.3f" % g for g in gaps)))
    kr = s.rsts(True, dropped)
    t.check(kr, "%s leg: the kernel's RST towards the dead peer when it gives up" % leg)
    orst = kaproxy_rst(t, o, other, dropped, dropped)
    t.check_within("%s powered off: last segment from the peer -> kaproxy's RST on the %s leg (wire)"
                   % (leg, other), orst["t"] - last_in["t"], bound, lab.timer_slack(bound),
                   lower_s=bound - 0.05, leg=leg, situation="powered-off (wire)")
    note(t, "wire", "%s leg: %d probes %s s apart, kernel RST at %.3fs; kaproxy's RST on the %s leg "
         "%.3fs after the last segment from the dead peer"
         % (leg, len(probes), "/".join("%.2f" % g for g in gaps), kr[0]["t"] - last_in["t"],
            other, orst["t"] - last_in["t"]))


# --- 3. rebooted -----------------------------------------------------------------------

def rebooted(t, legs=LEGS):
    each_leg(t, legs, _rebooted_leg)


def _rebooted_leg(t, leg):
    other, role = OTHER[leg], PEER_ROLE[leg]
    idle = FAIL_POLICY[0]
    cap, c = watched_conn(t, leg)
    c.exchange()
    t.reboot(role)
    back = time.time()
    note(t, "harness", "%s rebooted: fresh namespace, same address, no TCP state" % role)
    rec, r = c.ends(leg, 15)
    reset_verdict(t, c, leg, rec, r, "reset")
    t.check_within("%s rebooted: back up -> access-log line" % leg, rec["_seen"] - back,
                   idle, leg=leg, situation="rebooted")

    streams = c.streams(cap.packets())
    print_streams(t, streams, back - 2)
    s, o = streams[leg], streams[other]
    p = idle_probes(t, s, leg, max(s.last_data() + 0.5, back))[0]
    a = s.answer_to(p, within=0.5)
    t.check(a is not None and a["rst"] and a["seq"] == p["ack"],
            "%s leg: the rebooted host answers the probe with RST, SEG.SEQ = the probe's ACK (%s)"
            % (leg, a and "flags 0x%x seq %d vs ack %d" % (a["flags"], a["seq"], p["ack"])))
    orst = kaproxy_rst(t, o, other, a["t"] - 0.001, back)
    last_in = s.last_received_before(p["t"])
    t.check_within("%s leg: probe after the last segment received (wire)" % leg,
                   p["t"] - last_in["t"], idle, lab.timer_slack(idle), lower_s=idle - 0.05,
                   leg=leg, situation="rebooted: probe")
    t.check_within("%s rebooted: peer's RST -> kaproxy's RST on the %s leg (wire)" % (leg, other),
                   orst["t"] - a["t"], 0, lab.timer_slack(0), leg=leg,
                   situation="rebooted: RST relayed (wire)")
    note(t, "wire", "%s leg: probe %.3fs after the last segment, answered by RST in %.1fms; "
         "kaproxy's RST on the %s leg %.1fms later" % (leg, p["t"] - last_in["t"],
                                                      1000 * (a["t"] - p["t"]), other,
                                                      1000 * (orst["t"] - a["t"])))


# --- 4. killed -------------------------------------------------------------------------

KILL_BYTES = 100000


def killed(t, legs=LEGS):
    each_leg(t, legs, _killed_leg)


def _killed_leg(t, leg):
    other = OTHER[leg]
    cap, c = watched_conn(t, leg)
    # The victim reads all it is sent (so its kernel closes with FIN, not
    # RST), sends KILL_BYTES and is killed before the other peer reads any.
    c.send(other, 5000)
    c.ok(leg, "expect 5000")
    c.send(leg, KILL_BYTES)
    victim = c.peer(leg)
    killed_at = time.time()
    victim.kill9()
    note(t, "harness", "kill -9 of the %s process right after it sent %d bytes"
         % (PEER_ROLE[leg], KILL_BYTES))
    r = c.do(other, "expect %d 10" % KILL_BYTES)
    t.check(r.status == "OK", "the %s receives all %d bytes the victim sent (%s)"
            % (PEER_ROLE[other], KILL_BYTES, r))
    r = c.do(other, "wait_close 5", timeout=10)
    note(t, PEER_ROLE[other], "all %d bytes, then wait_close -> %s" % (KILL_BYTES, r.raw))
    t.check(r.status == "EOF" and r["extra"] == "0", "then an orderly EOF, nothing more (%s)" % r)
    # Half-close: the other leg was only shut down for writing, so the
    # connection lives on until the surviving peer closes its side.
    t.check(c.still_open(), "the connection is still open (half-closed) after the forwarded FIN")
    c.ok(other, "close")
    rec = c.record(10)
    log_record(t, rec)
    t.check_closed(rec, "%s_fin" % leg, ("none", "fin"), **c.counts())

    streams = c.streams(cap.packets())
    print_streams(t, streams, killed_at - 0.5)
    s, o = streams[leg], streams[other]
    # The FIN's own sequence number is SEG.SEQ + SEG.LEN (it may ride on
    # the last data segment).
    fin_in = s.fins(False)
    fin_seq = fin_in and fin_in[0]["rseq"] + fin_in[0]["len"]
    t.check(fin_seq == 1 + KILL_BYTES,
            "%s leg: the killed peer's kernel sends FIN after all %d bytes (FIN at seq %s)"
            % (leg, KILL_BYTES, fin_seq))
    fin_out = o.fins(True)
    fin_seq = fin_out and fin_out[0]["rseq"] + fin_out[0]["len"]
    t.check(fin_seq == 1 + KILL_BYTES,
            "%s leg: kaproxy forwards the FIN after all %d bytes (FIN at seq %s)"
            % (other, KILL_BYTES, fin_seq))
    rsts = [p for p in s.pkts + o.pkts if p["rst"]]
    t.check(not rsts, "no RST on either leg: an orderly end")
    t.check_within("%s killed: kill -9 -> FIN forwarded on the %s leg (wire)" % (leg, other),
                   fin_out[0]["t"] - killed_at, 0, leg=leg, situation="killed (wire)")
    note(t, "wire", "%s leg: FIN from the killed peer at seq 1+%d; %s leg: kaproxy's FIN at seq "
         "1+%d %.1fms after the kill; no RST" % (leg, KILL_BYTES, other, KILL_BYTES,
                                                 1000 * (fin_out[0]["t"] - killed_at)))


# --- 5. path broken, keepalive off, data in flight --------------------------------------------

BUSY_BYTES = 50000


def path_broken(t, legs=LEGS):
    extra = {leg: {"%s_keepalive" % leg: "off", "%s_user_timeout" % leg: "%ds" % USER_TIMEOUT,
                   "%s_keepalive_idle" % leg: "1s"} for leg in LEGS}
    each_leg(t, legs, _path_broken_leg, extra)


def _path_broken_leg(t, leg):
    other, role = OTHER[leg], PEER_ROLE[leg]
    cap, c = watched_conn(t, leg)
    c.exchange()
    # 1.5 s idle: with keepalive on (idle 1 s) a probe would show up here.
    time.sleep(1.5)
    dropped = t.drop_all(role)
    note(t, "harness", "path to the %s broken (its namespace drops everything); "
         "the %s sends %d bytes" % (role, PEER_ROLE[other], BUSY_BYTES))
    sent = time.time()
    c.send(other, BUSY_BYTES)
    rec, r = c.ends(leg, USER_TIMEOUT + 10)
    pkts = cap.packets()
    c.peer(leg).stop()
    t.undrop(role)
    reset_verdict(t, c, leg, rec, r, "timeout")
    t.check_within("%s path broken, keepalive off: send -> access-log line" % leg,
                   rec["_seen"] - sent, USER_TIMEOUT, lower_s=USER_TIMEOUT - 0.2,
                   leg=leg, situation="path-broken (user_timeout)")

    streams = c.streams(pkts)
    print_streams(t, streams, dropped - 2)
    s, o = streams[leg], streams[other]
    t.check(not s.probes(), "%s leg: no keepalive probe at all (keepalive off), though idle "
            "1.5 s > keepalive_idle 1 s" % leg)
    data = [p for p in s.sent(dropped) if p["len"] > 0]
    t.check(data, "%s leg: kaproxy sends the data towards the unreachable peer" % leg)
    retrans = [p for p in data if p["rseq"] + p["len"] <= p["nxt"]]
    t.check(retrans, "%s leg: and retransmits it (%d retransmissions)" % (leg, len(retrans)))
    t.check(not s.received(dropped + 0.05), "%s leg: nothing comes back" % leg)
    orst = kaproxy_rst(t, o, other, dropped, dropped)
    t.check_within("%s path broken: first unacknowledged segment -> kaproxy's RST on the %s leg (wire)"
                   % (leg, other), orst["t"] - data[0]["t"], USER_TIMEOUT,
                   lab.timer_slack(USER_TIMEOUT), lower_s=USER_TIMEOUT - 0.05, leg=leg,
                   situation="path-broken (wire)")
    note(t, "wire", "%s leg: no probes, %d data segments of which %d retransmissions; kaproxy's "
         "RST on the %s leg %.3fs after the first unacknowledged segment"
         % (leg, len(data), len(retrans), other, orst["t"] - data[0]["t"]))


# --- 6. NAT idle expiry -----------------------------------------------------------------

def check_config(t, nat_timeout):
    """-t and start-up refuse a client_nat_timeout not above the keepalive
    idle, and accept one that is."""
    px = t.kaproxy_bin
    good = t.kaproxy_ini({"kept": lab.listener(client=NAT_KEEPALIVE,
                                               client_nat_timeout="%ds" % nat_timeout)})
    bad = t.kaproxy_ini({"late": lab.listener(client=(nat_timeout, 1, 2),
                                              client_nat_timeout="%ds" % nat_timeout)})
    paths = {}
    for name, text in (("good", good), ("bad", bad)):
        paths[name] = os.path.join(t.dir, "nat-%s.ini" % name)
        with open(paths[name], "w") as f:
            f.write(text)
    r = lab.sh([px, "-t", "-c", paths["good"]], check=False)
    t.check(r.returncode == 0 and "nat_timeout %ds" % nat_timeout in r.stdout + r.stderr,
            "kaproxy -t accepts client_keepalive_idle %ds below client_nat_timeout %ds (exit %d)"
            % (NAT_KEEPALIVE[0], nat_timeout, r.returncode))
    r = lab.sh([px, "-t", "-c", paths["bad"]], check=False)
    msg = (r.stderr + r.stdout).strip()
    note(t, "kaproxy -t", "idle %ds, nat_timeout %ds: exit %d: %s" % (nat_timeout, nat_timeout,
                                                                      r.returncode, msg))
    t.check(r.returncode == 1 and ("%s:" % paths["bad"]) in msg and "nat_timeout" in msg,
            "kaproxy -t refuses client_keepalive_idle %ds = client_nat_timeout (exit 1, FILE:LINE)"
            % nat_timeout)
    try:
        r = subprocess.run([px, "-c", paths["bad"]], capture_output=True, text=True, timeout=10)
        st = r.returncode
    except subprocess.TimeoutExpired:
        st = None
    t.check(st not in (0, None), "kaproxy refuses to start with it (exit %s)" % st)


def nat_expiry(t, legs=("client",)):
    if "upstream" in legs:
        raise lab.Failure("nat-expiry: the lab's NAT sits on the client leg only")
    nat = t.nat_timeout
    check_config(t, nat)
    bare_keys = lab.listener(listen="%s:7000" % lab.PROXY_CLIENT_IP, client_keepalive="off",
                             client_user_timeout="%ds" % USER_TIMEOUT)
    kept_keys = lab.listener(listen="%s:7010" % lab.PROXY_CLIENT_IP, client=NAT_KEEPALIVE,
                             client_nat_timeout="%ds" % nat)
    t.start_kaproxy({"bare": bare_keys, "kept": kept_keys})
    cap = start_capture(t)
    ccap = t.capture("tcp", "client")
    srv = alive_server(t)
    bare = Conn(t, srv, "bare", 7000, "client-bare")
    kept = Conn(t, srv, "kept", 7010, "client-kept")
    bare.exchange()
    t_bare = time.time()
    kept.exchange()
    t_kept = time.time()
    entries = t.conntrack()
    note(t, "nat conntrack", "\n".join(entries))
    t.check(any("dport=7000" in e for e in entries) and any("dport=7010" in e for e in entries),
            "the NAT tracks both connections")

    # The kept flow must never lose its NAT state; the bare one must.
    polls = [0]

    def kept_tracked():
        es = t.conntrack()
        if not any("dport=7010" in e for e in es):
            raise lab.Failure("kept: the NAT lost the kept-alive flow's state after %.1fs"
                              % (time.time() - t_kept))
        polls[0] += 1
        return es

    def bare_gone():
        return not any("dport=7000" in e for e in kept_tracked())
    lab.wait_until(bare_gone, nat + 3, "the NAT to forget the idle connection", interval=0.2)
    gone = time.time()
    t.check_within("NAT forgets the idle flow (conntrack entry gone after the last packet)",
                   gone - t_bare, nat, lower_s=nat - 0.5, leg="client",
                   situation="nat-expiry: NAT state lost")
    note(t, "nat conntrack", "bare flow forgotten %.2fs after its last packet; kept flow still there"
         % (gone - t_bare))
    st = [s["state"] for s in t.proxy_sockets() if s["local"] == "%s:7000" % lab.PROXY_CLIENT_IP
          and s["remote"] == "%s:%d" % bare.client_addr]
    t.check(st == ["ESTABLISHED"], "kaproxy still believes the bare connection is up (%s)" % st)

    # Server -> client data on the bare connection now goes nowhere.
    sent = time.time()
    bare.send("upstream", 1000)
    bare.cli.submit("expect 1000 %d" % (USER_TIMEOUT + 2))
    srv.ok("use %d" % bare.srv_conn)
    srv.submit("wait_close %d" % (USER_TIMEOUT + 10))
    rec = bare.record(USER_TIMEOUT + 10)
    r_srv = srv.reply(15)
    r_cli = bare.cli.reply(USER_TIMEOUT + 5)
    log_record(t, rec)
    note(t, "client (bare)", "expect 1000 -> %s" % r_cli.raw)
    note(t, "server (bare)", "wait_close -> %s" % r_srv.raw)
    t.check(r_cli.status == "ERR" and r_cli["got"] == "0" and r_cli.get("why") == "TIMEOUT",
            "bare: the 1000 bytes the server sent never reach the client (%s)" % r_cli)
    t.check_closed(rec, "client_timeout", "rst", **bare.counts())
    t.check_within("bare (no keepalive) behind an expired NAT: send -> access-log line",
                   rec["_seen"] - sent, USER_TIMEOUT, lower_s=USER_TIMEOUT - 0.2,
                   leg="client", situation="nat-expiry (user_timeout)")
    t.check(r_srv.status == "RESET", "bare: the server gets RST (%s)" % r_srv)

    # The kept-alive connection: idle through several NAT timeouts.
    until = t_kept + 2.5 * nat

    lab.wait_until(lambda: kept_tracked() and time.time() >= until, until - time.time() + 5,
                   "2.5 NAT timeouts of idleness", interval=0.2)
    t.check(True, "kept: the NAT still tracked the flow at each of %d polls over %.1fs"
            % (polls[0], time.time() - t_kept))
    idle_for = time.time() - t_kept
    kept.send("upstream", 1000)
    r = kept.do("client", "expect 1000 5")
    note(t, "client (kept)", "after %.1fs idle (%.1f NAT timeouts): expect 1000 -> %s"
         % (idle_for, idle_for / nat, r.raw))
    t.check(r.status == "OK", "kept: server -> client data arrives after %.1fs idle = %.1f NAT "
            "timeouts (%s)" % (idle_for, idle_for / nat, r))
    kept.send("client", 1000)
    kept.ok("upstream", "expect 1000 5")
    t.check(kept.still_open(), "kept: still open, no access-log line")

    pkts = cap.packets()
    streams, bstreams = kept.streams(pkts), bare.streams(pkts)
    print_streams(t, bstreams, t_bare - 0.5)
    s = streams["client"]
    print("---- wire, kept client leg (probes)")
    print("\n".join(s.summary(t_kept - 0.5)), flush=True)
    window = [p for p in s.pkts if t_kept - 0.5 <= p["t"] <= t_kept + 2.5 * nat]
    probes = idle_probes(t, s, "client", t_kept + 0.5, until)
    gaps = [b["t"] - a["t"] for a, b in zip(window, window[1:])]
    t.check_within("kept: longest silence on the NAT'd flow while idle (wire)", max(gaps),
                   NAT_KEEPALIVE[0], lab.timer_slack(NAT_KEEPALIVE[0]), leg="client",
                   situation="nat-expiry: kept-alive max silence")
    t.check(max(gaps) < nat, "kept: never silent for the NAT timeout %ds (longest %.2fs)"
            % (nat, max(gaps)))
    b = bstreams["client"]
    retr = [p for p in b.sent(sent) if p["len"] > 0]
    t.check(retr and not b.received(sent),
            "bare: kaproxy sends (%d segments) and hears nothing back" % len(retr))
    if ccap is not None:
        cpk = ccap.packets("tcp.port == %d" % int(bare.cli_local.rsplit(":", 1)[1]))
        late = [p for p in cpk if p["t"] > gone]
        print("---- wire in the client namespace, bare connection")
        print("\n".join("%.3f %s:%d > %s:%d len=%d flags=0x%x" % (p["t"], p["src"], p["sport"],
                        p["dst"], p["dport"], p["len"], p["flags"]) for p in cpk), flush=True)
        t.check(not late, "bare: not one packet reaches the client after the NAT forgot the flow "
                "(%d seen)" % len(late))
    note(t, "wire", "kept: %d probes, longest silence %.2fs < NAT timeout %ds; bare: %d segments "
         "sent into the expired NAT, none reached the client" % (len(probes), max(gaps), nat, len(retr)))


RUN = {"normal": normal, "powered-off": powered_off, "rebooted": rebooted, "killed": killed,
       "path-broken": path_broken, "nat-expiry": nat_expiry}
