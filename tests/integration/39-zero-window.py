#!/usr/bin/env python3
"""A peer that stops reading (alive, its window shut, its window probes answered) is told apart from a silent one on either leg: with a user timeout the kernel gives up on it and the record says peer_state not_reading with how long the window stayed shut; a silent peer says silent; without a user timeout the reader is held and later gets every byte.

Why: a peer that takes no data is alive; kaproxy applies backpressure (it
stops reading the other leg once its pipe and socket buffers are full) and
does not judge it.  The leg's TCP_USER_TIMEOUT does: Linux aborts a leg whose
window has stayed shut that long, as it aborts a silent one, and both are
*_timeout.  detect_ms means the same for both: from the last segment the
peer sent (for a reader that stopped, its last probe answer) to the verdict;
stalled_ms says how long it had taken no data.

Each leg, one connection per case (policies 1s/1s/2: user timeout 3 s):
- not_reading: the receiving peer never reads while the other sends 64 MB;
- silent: the same, then the receiving peer's namespace drops everything;
- held (user timeout off): the receiving peer stops reading for twice the
  bound, nothing is closed, then it reads every byte.
"""
import time

import lab

POLICY = (1, 1, 2)
USER_TIMEOUT_MS = lab.worst_case_s(POLICY) * 1000
FLOOD = 64000000


def ends(leg, cli, srv):
    """(sender, receiver) for a case where leg's peer is the receiver."""
    srv.ok("use %d" % cli.server_conn)
    return (cli, srv) if leg == "upstream" else (srv, cli)


def stall(t, leg, kind, cli, srv):
    """Flood leg's peer, which never reads, until the sender is stuck.
    Returns the sender and when it was first stuck."""
    sender, receiver = ends(leg, cli, srv)
    start = time.time()
    r = sender.cmd("send %d 1" % FLOOD, timeout=30)
    t.check(r.status == "ERR" and r["errno"] == "TIMEOUT",
            "%s/%s: the sender is stuck once %s bytes are buffered (%s)"
            % (leg, kind, r.get("sent"), r))
    # The sender's socket blocked at least 1 s before the timeout answered.
    return sender, receiver, time.time() - 1.0, start


def dead_case(t, leg, kind, cli, srv):
    addr = cli.ok("info")["local"]
    marked = marks(t)
    sender, receiver, stuck, start = stall(t, leg, kind, cli, srv)
    if kind == "silent":
        t.drop_all("server" if leg == "upstream" else "client")
    rec = t.access_log.of("zw", 15, client=addr)
    if kind == "silent":
        t.undrop("server" if leg == "upstream" else "client")
    t.check_closed(rec, "%s_timeout" % leg, "rst")
    t.check(rec["peer_state"] == kind, "%s/%s: peer_state %s (got %r)"
            % (leg, kind, kind, rec["peer_state"]))
    dead_tcp = rec["%s_tcp" % leg]
    t.check(dead_tcp["snd_wnd"] == 0, "%s/%s: the dead leg's window was shut (snd_wnd %r)"
            % (leg, kind, dead_tcp["snd_wnd"]))
    # The kernel gives up once the window has stayed shut for the user timeout.
    t.check_within("%s/%s: window shut -> access-log line" % (leg, kind),
                   rec["_seen"] - start, USER_TIMEOUT_MS / 1000.0 + 1.0,
                   lower_s=USER_TIMEOUT_MS / 1000.0 - 0.2, leg=leg)
    if kind == "not_reading":
        t.check(USER_TIMEOUT_MS - 200 <= rec["stalled_ms"] <= USER_TIMEOUT_MS + 1000 * lab.SLACK,
                "%s: stalled_ms %d is the user timeout (%d ms)" % (leg, rec["stalled_ms"],
                                                                  USER_TIMEOUT_MS))
        t.check(rec["detect_ms"] < rec["stalled_ms"],
                "%s: detect_ms %d < stalled_ms %d: its probes were answered until the end"
                % (leg, rec["detect_ms"], rec["stalled_ms"]))
    else:
        t.check(dead_tcp["probes"] > 0, "%s: probes were left unanswered (%d)"
                % (leg, dead_tcp["probes"]))
    if leg == "upstream":
        # upstream_recheck_on_death: a silent upstream makes its address
        # suspect; one that only stopped reading is alive, and does not.
        if kind == "not_reading":
            t.check(marks(t) == marked, "upstream/not_reading: its address is not made "
                    "suspect (%d marks before, %d after)" % (marked, marks(t)))
        else:
            lab.wait_until(lambda: marks(t) > marked, 5, "upstream/silent: a mark")
            lab.log("ok: upstream/silent: its address is suspect")
    # The other peer learns at once: its stuck send ends in a reset.
    r = sender.cmd("send 1000 5", timeout=10)
    t.check(r.status == "ERR" and r["errno"] in ("ECONNRESET", "EPIPE"),
            "%s/%s: the sender's leg was reset (%s)" % (leg, kind, r))


UPSTREAM = "%s:7001" % lab.SERVER_IP


def marks(t):
    """How many times kaproxy has made the server's address suspect."""
    return t.kaproxy.stderr_text(10 ** 7).count("upstream %s: suspect" % UPSTREAM)


def break_a_neighbour(t, cli, srv):
    """upstream_recheck_on_death: another idle connection to the same server
    loses its path and dies as upstream_timeout, so the address turns suspect
    and kaproxy re-probes its other connections, the held one among them."""
    legs = lambda: {s["local"] for s in t.proxy_sockets() if s["remote"] == UPSTREAM}
    before, marked = legs(), marks(t)
    nb = t.pair(srv, name="neighbour")
    srv.ok("use %d" % cli.server_conn)
    port = lab.wait_until(lambda: list(legs() - before), 5, "the neighbour's upstream leg")
    port = port[0].rpartition(":")[2]
    rule = [["INPUT", "--sport", port, "--dport", "7001"],
            ["OUTPUT", "--sport", "7001", "--dport", port]]
    for chain, *match in rule:
        t.run("server", ["iptables", "-w", "5", "-I", chain, "1", "-p", "tcp"] + match
              + ["-j", "DROP"])
    rec = t.access_log.of("zw", lab.worst_case_s(POLICY) + 2 * lab.SLACK,
                          client=nb.ok("info")["local"])
    t.check_closed(rec, "upstream_timeout", "rst")
    lab.wait_until(lambda: marks(t) > marked, 5, "the server's address suspect")
    lab.log("ok: a neighbour died: %s is suspect" % UPSTREAM)
    for chain, *match in rule:
        t.run("server", ["iptables", "-w", "5", "-D", chain, "-p", "tcp"] + match
              + ["-j", "DROP"])
    nb.ok("close")


def held_case(t, leg, cli, srv):
    sender, receiver, stuck, _ = stall(t, leg, "held", cli, srv)
    if leg == "upstream":
        # A server that stops reading is alive: the re-probe must leave it be.
        break_a_neighbour(t, cli, srv)
    sent = sender.ok("info")["sent"]
    hold = 2 * lab.worst_case_s(POLICY)
    lab.log("%s: holding a reader that takes nothing for %d s" % (leg, hold))
    addr = cli.ok("info")["local"]
    deadline = time.time() + hold
    while time.time() < deadline and not t.access_log.closed("held", client=addr):
        time.sleep(0.2)    # watching for a close that must not come
    t.check(not t.access_log.closed("held", client=addr),
            "%s: nothing closed while the reader took nothing for %d s" % (leg, hold))
    r = receiver.ok("expect %s 10" % sent, timeout=20)
    t.check(r["got"] == sent, "%s: the reader got all %s bytes, in order" % (leg, sent))
    sender.ok("shutdown_wr")
    r = receiver.cmd("wait_close 5", timeout=10)
    t.check(r.status == "EOF", "%s: then an orderly end (%s)" % (leg, r))
    receiver.ok("shutdown_wr")
    r = sender.cmd("wait_close 5", timeout=10)
    t.check(r.status == "EOF", "%s: and the other way too (%s)" % (leg, r))
    rec = t.access_log.of("held", 10, client=addr)
    t.check_closed(rec, "client_fin" if leg == "upstream" else "upstream_fin", "none")
    moved = rec["bytes_from_client"] if leg == "upstream" else rec["bytes_to_client"]
    t.check(moved == int(sent), "%s: the record counts the %s bytes (got %d)" % (leg, sent, moved))
    cli.ok("close")
    srv.ok("close")


def main(t):
    srv = t.server(backlog=32)
    zw = lab.listener(client=POLICY, upstream_policy=POLICY)
    held = lab.listener(listen="%s:7010" % lab.PROXY_CLIENT_IP, client=POLICY,
                        upstream_policy=POLICY, client_user_timeout="off",
                        upstream_user_timeout="off")
    t.start_kaproxy({"zw": zw, "held": held})
    for leg in ("upstream", "client"):
        cli = t.pair(srv, target="%s:7010" % lab.PROXY_CLIENT_IP, name="held-%s" % leg)
        held_case(t, leg, cli, srv)
    for kind in ("not_reading", "silent"):
        for leg in ("upstream", "client"):
            cli = t.pair(srv, name="%s-%s" % (kind, leg))
            dead_case(t, leg, kind, cli, srv)


if __name__ == "__main__":
    lab.run(main, __doc__)
