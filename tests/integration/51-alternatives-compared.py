#!/usr/bin/env python3
"""The same dead peer, through kaproxy and through the alternatives Debian ships: HAProxy 2.6, nginx 1.22's stream module and socat 1.7, side by side, each given the same policy on each leg as far as it can express it (keepalive idle 2 s, interval 1 s, 2 probes: a dead peer is known within 4 s; a 4 s TCP_USER_TIMEOUT).  This is the evidence behind the README's "Why kaproxy" table, which quotes the outcomes asserted here.

Five situations, each hitting all four proxies at the same moment:
  server powered off after a reload
                      connected under a 60 s/10 s/6 policy, the files changed
                      to the short one and each proxy reloaded as its manual
                      says; then the server goes silent: does the change reach
                      the connection that was already open?
  server powered off  the server namespace drops everything while every
                      connection is idle; what does each client see, and when?
  client powered off  the client namespace drops everything; what does each
                      server see, and when?
  server powered off while busy
                      the client sends after the server went silent: data
                      unacknowledged, so only a user timeout bounds the leg
  server rebooted     the server comes back without state and answers the
                      next probe with RST
For each proxy the survivor's socket tells how it learned (RST, FIN, or
nothing within 12 s) and the proxy's own log, read before the next
situation, tells what it recorded.  A
proxy whose behaviour differs from what EXPECT says fails the scenario, so
the README cannot drift from what the proxies do.

All four run in the proxy namespace; each has its own server port so the
four servers' sockets can be watched at once:
  client -> kaproxy :7000 -> server :7001     client -> nginx :7200 -> server :7003
  client -> HAProxy :7100 -> server :7002     client -> socat :7300 -> server :7004
"""
import os
import re
import shutil
import signal
import time

import lab

POLICY = (2, 1, 2)                       # idle, interval, count on both legs
BOUND = lab.worst_case_s(POLICY)         # 4 s
LONG = (60, 10, 6)                       # what kaproxy, HAProxy and nginx start with
WAIT = 12                                # how long a survivor waits for news
PROXIES = ("kaproxy", "haproxy", "nginx", "socat")
LISTEN = {"kaproxy": 7000, "haproxy": 7100, "nginx": 7200, "socat": 7300}
SERVER = {"kaproxy": 7001, "haproxy": 7002, "nginx": 7003, "socat": 7004}

SITUATIONS = (("server powered off after a reload", "server"),
              ("server powered off", "server"), ("client powered off", "client"),
              ("server powered off while busy", "server"), ("server rebooted", "server"))
# The bound on when the survivor learns, and the earliest allowed: a silent
# peer is known after idle + interval * count; a rebooted one answers the
# first probe, sent at idle, with RST.
BOUNDS = {"server powered off after a reload": (BOUND, BOUND - POLICY[1] * POLICY[2] - 0.5),
          "server powered off": (BOUND, BOUND - POLICY[1] * POLICY[2] - 0.5),
          "client powered off": (BOUND, BOUND - POLICY[1] * POLICY[2] - 0.5),
          "server powered off while busy": (BOUND, BOUND - 0.5),
          "server rebooted": (POLICY[0], None)}

# What the survivor's socket sees (RESET, EOF or TIMEOUT = nothing within
# WAIT), and whether it comes within the policy's bound, per situation.
EXPECT = {
    # Connected under LONG, the file changed to POLICY and reloaded (socat,
    # which has no reload, runs POLICY from the start and is the control).
    "server powered off after a reload": {
        "kaproxy": ("RESET", True),
        "haproxy": ("TIMEOUT", False),   # the old worker keeps the old policy
        "nginx": ("TIMEOUT", False),
        "socat": ("EOF", True),
    },
    "server powered off": {
        "kaproxy": ("RESET", True),
        "haproxy": ("EOF", True),
        "nginx": ("TIMEOUT", False),     # no per-upstream keepalive timing
        "socat": ("EOF", True),
    },
    "client powered off": {
        "kaproxy": ("RESET", True),
        "haproxy": ("RESET", True),
        "nginx": ("EOF", True),
        "socat": ("EOF", True),
    },
    # The client sends 1000 bytes after the DROP: keepalive is out of play
    # while data is unacknowledged; only a user timeout bounds the leg.
    "server powered off while busy": {
        "kaproxy": ("RESET", True),
        "haproxy": ("EOF", True),
        "nginx": ("TIMEOUT", False),     # no user timeout: retransmits for minutes
        "socat": ("EOF", True),
    },
    "server rebooted": {
        "kaproxy": ("RESET", True),
        "haproxy": ("EOF", True),
        "nginx": ("TIMEOUT", False),
        "socat": ("EOF", True),
    },
}

# What each proxy's own log says of the connection: kaproxy's close_reason,
# HAProxy's termination state, nginx's $status, socat's error message.
LOGGED = {
    "server powered off after a reload": {"kaproxy": "upstream_timeout", "haproxy": None,
                                          "nginx": None, "socat": "Connection timed out"},
    "server powered off": {"kaproxy": "upstream_timeout", "haproxy": "SD", "nginx": None,
                           "socat": "Connection timed out"},
    "client powered off": {"kaproxy": "client_timeout", "haproxy": "CD", "nginx": "200",
                           "socat": "Connection timed out"},
    "server powered off while busy": {"kaproxy": "upstream_timeout", "haproxy": "SD",
                                      "nginx": None, "socat": "Connection timed out"},
    "server rebooted": {"kaproxy": "upstream_reset", "haproxy": "SD", "nginx": None,
                        "socat": "Connection reset by peer"},
}
# Read right after each situation, before the next one can end an older
# connection.  HAProxy and nginx write a line when a session ends: None is
# a proxy that never learned its server was gone.

HAPROXY_CFG = """
global
    master-worker
    log stdout format raw local0
defaults
    mode tcp
    log global
    option tcplog
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    option clitcpka
    clitcpka-idle {idle}s
    clitcpka-intvl {intvl}s
    clitcpka-cnt {cnt}
    option srvtcpka
    srvtcpka-idle {idle}s
    srvtcpka-intvl {intvl}s
    srvtcpka-cnt {cnt}
frontend f
    bind {pc}:{listen} tcp-ut {ut}s
    default_backend b
backend b
    server s {srv}:{port} tcp-ut {ut}s
"""

NGINX_CONF = """
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log info;
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
events {{ worker_connections 64; }}
stream {{
    log_format why '$remote_addr:$remote_port status=$status session_time=$session_time';
    access_log {dir}/nginx-access.log why;
    server {{
        listen {pc}:{listen} so_keepalive={idle}s:{intvl}s:{cnt};
        proxy_pass {srv}:{port};
        proxy_socket_keepalive on;
        proxy_timeout 1h;
    }}
}}
"""


class Alternatives:
    """The four proxies, their configuration files, and how each reloads."""

    def __init__(self, t):
        self.t = t
        for tool, package in (("haproxy", "haproxy"), ("socat", "socat"),
                              ("nginx", "nginx and libnginx-mod-stream")):
            if not shutil.which(tool):
                raise lab.Failure("%s is not installed (tools/install-deps.sh installs %s)"
                                  % (tool, package))
        self.haproxy_cfg = os.path.join(t.dir, "haproxy.cfg")
        self.nginx_conf = os.path.join(t.dir, "nginx.conf")
        self.procs = {}

    def kaproxy_listeners(self, policy):
        return {"k": lab.listener(listen="%s:%d" % (lab.PROXY_CLIENT_IP, LISTEN["kaproxy"]),
                                  upstream="%s:%d" % (lab.SERVER_IP, SERVER["kaproxy"]),
                                  client=policy, upstream_policy=policy,
                                  client_user_timeout="%ds" % lab.worst_case_s(policy),
                                  upstream_user_timeout="%ds" % lab.worst_case_s(policy),
                                  upstream_recheck_on_death="off")}

    def write(self, policy):
        """Write HAProxy's and nginx's files for policy, each checked by its
        own -c / -t first."""
        t = self.t
        idle, intvl, cnt = policy
        fmt = dict(idle=idle, intvl=intvl, cnt=cnt, ut=lab.worst_case_s(policy), pc=lab.PROXY_CLIENT_IP, srv=lab.SERVER_IP,
                   dir=t.dir)
        with open(self.haproxy_cfg, "w") as f:
            f.write(HAPROXY_CFG.format(listen=LISTEN["haproxy"], port=SERVER["haproxy"], **fmt))
        r = t.run("proxy", ["haproxy", "-c", "-f", self.haproxy_cfg], check=False)
        t.check(r.returncode == 0, "haproxy -c accepts the config (%s)" % (r.stdout + r.stderr))
        with open(self.nginx_conf, "w") as f:
            f.write(NGINX_CONF.format(listen=LISTEN["nginx"], port=SERVER["nginx"], **fmt))
        r = t.run("proxy", ["nginx", "-t", "-e", "stderr", "-c", self.nginx_conf], check=False)
        t.check(r.returncode == 0, "nginx -t accepts the config (%s)" % (r.stdout + r.stderr))

    def start(self, policy):
        t, procs = self.t, self.procs
        procs["kaproxy"] = t.start_kaproxy(self.kaproxy_listeners(policy))
        self.write(policy)
        procs["haproxy"] = t.spawn("proxy", ["haproxy", "-db", "-f", self.haproxy_cfg],
                                   "haproxy")
        procs["nginx"] = t.spawn("proxy", ["nginx", "-e", "stderr", "-c", self.nginx_conf],
                                 "nginx")
        # socat has no reload: it runs the short policy from the start.
        # TCP_USER_TIMEOUT (level 6, option 18) through socat's generic option.
        ka = "keepalive,keepidle=%d,keepintvl=%d,keepcnt=%d,sockopt-int=6:18:%d" % (
            POLICY + (lab.worst_case_s(POLICY) * 1000,))
        procs["socat"] = t.spawn("proxy", [
            "socat", "-d", "-d",
            "TCP-LISTEN:%d,bind=%s,reuseaddr,fork,%s" % (LISTEN["socat"], lab.PROXY_CLIENT_IP,
                                                         ka),
            "TCP:%s:%d,%s" % (lab.SERVER_IP, SERVER["socat"], ka)], "socat")
        # HAProxy's and nginx's listening sockets are their workers', so
        # look at the namespace's table (each must still be running).
        for name in ("haproxy", "nginx", "socat"):
            addr = "%s:%d" % (lab.PROXY_CLIENT_IP, LISTEN[name])

            def listening():
                if not procs[name].alive():
                    raise lab.Failure("%s exited: %s" % (name, procs[name].stderr_text()))
                return any(s["local"] == addr and s["state"] == "LISTEN"
                           for s in lab.proc_tcp(procs[name].pid))
            lab.wait_until(listening, 15, "%s to listen on %s" % (name, addr))

    def reload(self, policy):
        """Each reloads the way its manual says: kaproxy and nginx on SIGHUP,
        HAProxy's master on SIGUSR2.  Returns once each says it has."""
        t, procs = self.t, self.procs
        self.write(policy)
        loaded = procs["haproxy"].stderr_text(None).count("Loading success")
        procs["kaproxy"].reload(t.kaproxy_ini(self.kaproxy_listeners(policy)))
        os.kill(procs["haproxy"].pid, signal.SIGUSR2)
        os.kill(procs["nginx"].pid, signal.SIGHUP)
        procs["kaproxy"].wait_log("reloaded")
        lab.wait_until(lambda: procs["haproxy"].stderr_text(None).count("Loading success")
                       > loaded, 10, "HAProxy's master to say 'Loading success'")
        lab.wait_until(lambda: "gracefully shutting down" in text(
            os.path.join(t.dir, "nginx-error.log")), 10, "nginx's old worker to step down")

    def stop(self):
        for name, p in self.procs.items():
            if name != "kaproxy":
                p.stop()


def connect_all(t, servers, tag):
    """One idle connection through each proxy, bytes proved both ways."""
    pairs = {}
    for name in PROXIES:
        cli = t.pair(servers[name], target="%s:%d" % (lab.PROXY_CLIENT_IP, LISTEN[name]),
                     name="%s-%s" % (tag, name))
        servers[name].ok("use %d" % cli.server_conn)
        t.exchange(cli, servers[name])
        pairs[name] = cli
    return pairs


def survive(t, situation, survivors, dead_role):
    """Silence (or reboot) dead_role; every survivor waits for news.
    Returns {proxy: (status, seconds after the DROP)}."""
    asked = {}
    busy = situation.endswith("busy")
    if busy:
        dropped = t.drop_all(dead_role)
    for name, peer in survivors.items():
        if busy:
            peer.ok("send 1000")
        asked[name] = time.time()
        peer.submit("wait_close %d" % WAIT)
    if situation.endswith("rebooted"):
        dropped = time.time()
        t.reboot(dead_role)
    elif not busy:
        dropped = t.drop_all(dead_role)
    seen = {}
    for name, peer in survivors.items():
        r = peer.reply(WAIT + 5)
        # The peer times its own wait: its end is asked + ms.
        seen[name] = (r.status, asked[name] + int(r["ms"]) / 1000.0 - dropped)
    if not situation.endswith("rebooted"):
        t.undrop(dead_role)
    for name in PROXIES:
        status, after = seen[name]
        lab.log("%s, %s: the survivor saw %s %.2f s after the DROP" % (situation, name, status,
                                                                      after))
    return seen


def check_outcomes(t, situation, seen):
    bound, lower = BOUNDS[situation]
    for name in PROXIES:
        status, after = seen[name]
        want, in_bound = EXPECT[situation][name]
        t.check(status == want, "%s, %s: the survivor sees %s (saw %s after %.2f s)"
                % (situation, name, want, status, after))
        if not in_bound:
            continue
        if name == "kaproxy":       # kaproxy's own row in 99's measurement table
            t.check_within("%s, kaproxy: the survivor learns" % situation, after, bound,
                           lower_s=lower,
                           leg="client" if situation.startswith("client") else "upstream",
                           situation="compared")
        else:
            t.check((lower is None or after >= lower) and after <= bound + lab.SLACK,
                    "%s, %s: the survivor learns in %.2f s (bound %.2f s + %.2f s)"
                    % (situation, name, after, bound, lab.SLACK))


def text(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def haproxy_said(log, client):
    """The termination state HAProxy's tcplog line gives the connection."""
    m = re.search(r"^%s \[[^]]*\] \S+ \S+ \S+ \d+ (\S+) " % re.escape(client), log, re.M)
    return m.group(1) if m else None


def nginx_said(log, client):
    m = re.search(r"^%s status=(\d+) " % re.escape(client), log, re.M)
    return m.group(1) if m else None


def socat_said(log, client):
    """The error (E) or warning (W) socat's child for this client printed.
    The listener names the child in its next "forked off" line, which may
    come after the child's own first lines (two processes, one stderr)."""
    accepted = re.search(r"socat\[(\d+)\] N accepting connection from AF=2 %s on "
                         % re.escape(client), log)
    if not accepted:
        return None
    forked = re.compile(r"socat\[%s\] N forked off child process (\d+)" % accepted.group(1))
    child = forked.search(log, accepted.end())
    if not child:
        return None
    err = re.search(r"socat\[%s\] [EW] [^:]*: (.*)" % child.group(1), log)
    return err.group(1).strip() if err else None


def main(t):
    servers = {name: t.server(listen="%s:%d" % (lab.SERVER_IP, SERVER[name]),
                              name="server-%s" % name) for name in PROXIES}
    alt = Alternatives(t)
    alt.start(LONG)
    clients = {}      # situation -> {proxy: the client's address}

    for situation, dead in SITUATIONS:
        pairs = connect_all(t, servers, "".join(w[0] for w in situation.split()))
        clients[situation] = {name: pairs[name].ok("info")["local"] for name in PROXIES}
        if situation.endswith("reload"):
            alt.reload(POLICY)
        survivors = servers if dead == "client" else pairs
        seen = survive(t, situation, survivors, dead)
        check_outcomes(t, situation, seen)
        check_logged(t, alt, situation, clients[situation])

    alt.stop()
    lab.log("HAProxy's log:\n" + text(alt.procs["haproxy"].out_path))
    lab.log("nginx's access log:\n" + text(os.path.join(t.dir, "nginx-access.log")))
    lab.log("socat's log:\n" + alt.procs["socat"].stderr_text(None))


def check_logged(t, alt, situation, clients):
    """What each proxy wrote about this situation's connection, read as soon
    as every survivor has learned (or given up)."""
    rec = t.access_log.of("k", 5, client=clients["kaproxy"])
    want = LOGGED[situation]["kaproxy"]
    t.check(rec["close_reason"] == want and rec["teardown"] == "rst",
            "%s, kaproxy records %s, teardown rst (%s)" % (situation, want, rec))
    if want.endswith("_timeout"):
        leg = "client_tcp" if want.startswith("client") else "upstream_tcp"
        t.check(rec["detect_ms"] <= (BOUNDS[situation][0] + lab.SLACK) * 1000,
                "%s, kaproxy records detect_ms %d" % (situation, rec["detect_ms"]))
        if not situation.endswith("busy"):
            t.check(rec[leg]["probes"] == POLICY[2],
                    "%s, kaproxy records the %d unanswered probes in %s (%s)"
                    % (situation, POLICY[2], leg, rec[leg]))
    sources = {"haproxy": (lambda: text(alt.procs["haproxy"].out_path), haproxy_said),
               "nginx": (lambda: text(os.path.join(t.dir, "nginx-access.log")), nginx_said),
               "socat": (lambda: alt.procs["socat"].stderr_text(None), socat_said)}
    for name, (read, said) in sources.items():
        want = LOGGED[situation][name]
        if want is None:
            got = said(read(), clients[name])
        else:
            # A line is written as the session ends, a moment after the FIN.
            got = lab.wait_until(lambda: said(read(), clients[name]), 5,
                                 "%s's line for %s" % (name, clients[name]))
        t.check(got == want, "%s, %s records %r (got %r)" % (situation, name, want, got))


if __name__ == "__main__":
    lab.run(main, __doc__)
