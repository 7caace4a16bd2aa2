#!/usr/bin/env python3
"""The same dead peer, through kaproxy and through the alternatives Debian ships: HAProxy 2.6, nginx 1.22's stream module and socat 1.7, side by side, each given the shortest keepalive policy it can express on each leg (idle 2 s, interval 1 s, 2 probes: a dead peer is known within 4 s).  This is the evidence behind the README's "Why kaproxy" table, which quotes the outcomes asserted here.

Two situations, each hitting all four proxies at the same moment:
  server powered off  the server namespace drops everything while every
                      connection is idle; what does each client see, and when?
  client powered off  the client namespace drops everything; what does each
                      server see, and when?
For each proxy the survivor's socket tells how it learned (RST, FIN, or
nothing within 12 s) and the proxy's own log tells what it recorded.  A
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
import time

import lab

POLICY = (2, 1, 2)                       # idle, interval, count on both legs
BOUND = lab.worst_case_s(POLICY)         # 4 s
WAIT = 12                                # how long a survivor waits for news
PROXIES = ("kaproxy", "haproxy", "nginx", "socat")
LISTEN = {"kaproxy": 7000, "haproxy": 7100, "nginx": 7200, "socat": 7300}
SERVER = {"kaproxy": 7001, "haproxy": 7002, "nginx": 7003, "socat": 7004}

SITUATIONS = (("server powered off", "server"), ("client powered off", "client"),
              ("server rebooted", "server"))
# The bound on when the survivor learns, and the earliest allowed: a silent
# peer is known after idle + interval * count; a rebooted one answers the
# first probe, sent at idle, with RST.
BOUNDS = {"server powered off": (BOUND, BOUND - POLICY[1] * POLICY[2] - 0.5),
          "client powered off": (BOUND, BOUND - POLICY[1] * POLICY[2] - 0.5),
          "server rebooted": (POLICY[0], None)}

# What the survivor's socket sees (RESET, EOF or TIMEOUT = nothing within
# WAIT), and whether it comes within the policy's bound, per situation.
EXPECT = {
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
    "server powered off": {"kaproxy": "upstream_timeout", "haproxy": "SD", "nginx": "200",
                           "socat": "Connection timed out"},
    "client powered off": {"kaproxy": "client_timeout", "haproxy": "CD", "nginx": "200",
                           "socat": "Connection timed out"},
    "server rebooted": {"kaproxy": "upstream_reset", "haproxy": "SD", "nginx": None,
                        "socat": "Connection reset by peer"},
}
# (nginx logs a session when it ends; it never learned that this one's
# server was gone, and its fast shutdown (SIGTERM) writes no line.)

HAPROXY_CFG = """
global
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
    bind {pc}:{listen}
    default_backend b
backend b
    server s {srv}:{port}
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


def need(tool, package):
    if not shutil.which(tool):
        raise lab.Failure("%s is not installed (tools/install-deps.sh installs %s)"
                          % (tool, package))


def start_proxies(t):
    idle, intvl, cnt = POLICY
    fmt = dict(idle=idle, intvl=intvl, cnt=cnt, pc=lab.PROXY_CLIENT_IP, srv=lab.SERVER_IP,
               dir=t.dir)
    procs = {}
    procs["kaproxy"] = t.start_kaproxy(
        {"k": lab.listener(listen="%s:%d" % (lab.PROXY_CLIENT_IP, LISTEN["kaproxy"]),
                           upstream="%s:%d" % (lab.SERVER_IP, SERVER["kaproxy"]),
                           client=POLICY, upstream_policy=POLICY,
                           upstream_recheck_on_death="off")})

    need("haproxy", "haproxy")
    path = os.path.join(t.dir, "haproxy.cfg")
    with open(path, "w") as f:
        f.write(HAPROXY_CFG.format(listen=LISTEN["haproxy"], port=SERVER["haproxy"], **fmt))
    r = t.run("proxy", ["haproxy", "-c", "-f", path], check=False)
    t.check(r.returncode == 0, "haproxy -c accepts the config (%s)" % (r.stdout + r.stderr))
    procs["haproxy"] = t.spawn("proxy", ["haproxy", "-db", "-f", path], "haproxy")

    need("nginx", "nginx and libnginx-mod-stream")
    path = os.path.join(t.dir, "nginx.conf")
    with open(path, "w") as f:
        f.write(NGINX_CONF.format(listen=LISTEN["nginx"], port=SERVER["nginx"], **fmt))
    r = t.run("proxy", ["nginx", "-t", "-e", "stderr", "-c", path], check=False)
    t.check(r.returncode == 0, "nginx -t accepts the config (%s)" % (r.stdout + r.stderr))
    procs["nginx"] = t.spawn("proxy", ["nginx", "-e", "stderr", "-c", path], "nginx")

    need("socat", "socat")
    ka = "keepalive,keepidle=%d,keepintvl=%d,keepcnt=%d" % POLICY
    procs["socat"] = t.spawn("proxy", [
        "socat", "-d", "-d",
        "TCP-LISTEN:%d,bind=%s,reuseaddr,fork,%s" % (LISTEN["socat"], lab.PROXY_CLIENT_IP, ka),
        "TCP:%s:%d,%s" % (lab.SERVER_IP, SERVER["socat"], ka)], "socat")

    for name in ("haproxy", "nginx", "socat"):
        t.wait_listening(procs[name], ["%s:%d" % (lab.PROXY_CLIENT_IP, LISTEN[name])])
    return procs


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
    for name, peer in survivors.items():
        asked[name] = time.time()
        peer.submit("wait_close %d" % WAIT)
    if situation.endswith("rebooted"):
        dropped = time.time()
        t.reboot(dead_role)
    else:
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
    """The error (E) or warning (W) socat's child for this client printed."""
    m = re.search(r"accepting connection from AF=2 %s on .*\n.*forked off child process (\d+)"
                  % re.escape(client), log)
    if not m:
        return None
    err = re.search(r"socat\[%s\] [EW] [^:]*: (.*)" % m.group(1), log)
    return err.group(1).strip() if err else None


def main(t):
    servers = {name: t.server(listen="%s:%d" % (lab.SERVER_IP, SERVER[name]),
                              name="server-%s" % name) for name in PROXIES}
    procs = start_proxies(t)
    clients = {}      # situation -> {proxy: the client's address}

    for situation, dead in SITUATIONS:
        pairs = connect_all(t, servers, situation.split()[0][0] + situation.split()[-1][0])
        clients[situation] = {name: pairs[name].ok("info")["local"] for name in PROXIES}
        survivors = servers if dead == "client" else pairs
        seen = survive(t, situation, survivors, dead)
        check_outcomes(t, situation, seen)

    # What each one recorded about why, once each has written its lines.
    for p in procs.values():
        if p is not procs["kaproxy"]:
            p.stop()
    logs = {"haproxy": (text(procs["haproxy"].out_path), haproxy_said),
            "nginx": (text(os.path.join(t.dir, "nginx-access.log")), nginx_said),
            "socat": (procs["socat"].stderr_text(None), socat_said)}
    for situation, _ in SITUATIONS:
        rec = t.access_log.of("k", 5, client=clients[situation]["kaproxy"])
        want = LOGGED[situation]["kaproxy"]
        t.check(rec["close_reason"] == want and rec["teardown"] == "rst",
                "%s, kaproxy records %s, teardown rst (%s)" % (situation, want, rec))
        for name, (log, said) in logs.items():
            got, want = said(log, clients[situation][name]), LOGGED[situation][name]
            t.check(got == want, "%s, %s records %r (got %r)" % (situation, name, want, got))
    for name, (log, _) in logs.items():
        lab.log("%s's log:\n%s" % (name, log))


if __name__ == "__main__":
    lab.run(main, __doc__)
