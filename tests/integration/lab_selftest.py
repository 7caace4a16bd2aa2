"""The lab itself works, with socat standing in for kaproxy: namespaces, peers, silence, kill -9, reboot, capture, clean-up.

Not a numbered scenario (ctest does not run it): run it by hand after
changing lab.py or peer.py:

    sudo python3 tests/integration/lab_selftest.py            # all checks
    sudo python3 tests/integration/lab_selftest.py --cleanup  # also crash the
        harness (exception, SIGINT, SIGTERM, SIGKILL) and verify nothing is left

--crash MODE is internal: the run that --cleanup starts and breaks.
"""

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import lab

SOCAT = ["socat", "TCP-LISTEN:7000,bind=10.77.1.1,fork,reuseaddr", "TCP:10.77.2.2:7001"]
MB = 1000000


def standin(t):
    p = t.spawn("proxy", SOCAT, "socat")
    t.wait_listening(p, {"10.77.1.1:7000"})
    return p


def forward_and_half_close(t):
    srv = t.server()
    standin(t)
    cli = t.pair(srv)
    t.both_ways(cli, srv, MB)
    t.half_close(cli, srv, 70000)
    return srv


def silence(t, srv):
    cli = t.pair(srv, name="client2")
    t.drop_all("server")
    cli.ok("send 100")
    r = srv.cmd("expect 100 1.5")
    t.check(r.status == "ERR" and r["why"] == "TIMEOUT" and r["got"] == "0",
            "DROP: nothing reaches the silent server")
    t.undrop("server")
    r = srv.cmd("expect 100 10")
    t.check(r.status == "OK", "after undrop, the retransmission arrives")
    return cli


def kill_and_reboot(t, srv):
    # kill -9: the PID dies; the kernel closes its socket in order (FIN).
    cli = t.pair(srv, name="client3")
    srv.kill9()
    t.check(not srv.alive(), "kill -9 ended the server")
    r = cli.cmd("wait_close 5")
    t.check(r.status in ("EOF", "RESET"), "client sees the killed server's close (%s)" % r.status)

    # reboot: a socket in the proxy namespace straight to a fresh server.
    srv = t.server(name="server-b")
    direct = t.peer("proxy", "direct")
    direct.ok("connect 10.77.2.2:7001 5")
    srv.ok("accept 5")
    old_ns_inode = os.stat("/run/netns/" + t.ns["server"]).st_ino
    t.reboot("server")
    t.check(not srv.alive(), "reboot killed the server's processes")
    t.check(os.stat("/run/netns/" + t.ns["server"]).st_ino != old_ns_inode,
            "reboot made a new namespace")
    t.check("10.77.2.2/24" in t.run("server", ["ip", "-4", "addr"]).stdout,
            "rebooted server has its address back")
    direct.ok("send 10")
    r = direct.cmd("wait_close 5")
    t.check(r.status == "RESET", "rebooted server answers an old connection with RST")
    srv = t.server(name="server-c")
    d2 = t.peer("proxy", "direct2")
    d2.ok("connect 10.77.2.2:7001 5")
    t.check(srv.cmd("accept 5").status == "OK", "rebooted server accepts new connections")
    return srv


def capture(t, srv):
    cap = t.capture("tcp port 7001")
    if cap is None:
        return
    d = t.peer("proxy", "direct3")
    d.ok("connect 10.77.2.2:7001 5")
    srv.ok("accept 5")
    d.ok("send 10")
    srv.ok("expect 10")
    text = cap.text()
    print(text)
    t.check("7001" in text and "SYN" in text, "tshark saw the handshake")


def expect_split(t):
    """expect counts across calls and times out on silence."""
    srv = t.server(name="server-e", listen="10.77.2.2:7003")
    d = t.peer("proxy", "direct4")
    d.ok("connect 10.77.2.2:7003 5")
    srv.ok("accept 5")
    d.ok("send 5")
    srv.ok("expect 3")
    srv.ok("expect 2")  # pattern offset carried over: content verified
    r = srv.cmd("expect 4 1")
    t.check(r.status == "ERR" and r["why"] == "TIMEOUT", "expect times out on silence")


def full(t):
    srv = forward_and_half_close(t)
    silence(t, srv)
    srv = kill_and_reboot(t, srv)
    expect_split(t)
    capture(t, srv)


def crash(t):
    """Build, start processes, report them, then break as asked."""
    mode = t.args.crash
    srv = t.server()
    standin(t)
    t.pair(srv)
    pids = [p.pid for p in t._procs]
    print("LAB-UP pids=%s" % ",".join(map(str, pids)), flush=True)
    if mode == "exception":
        raise RuntimeError("deliberate")
    time.sleep(60)  # the parent signals us meanwhile


def own_namespaces(pid):
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [l.split()[0] for l in out.splitlines() if re.search(r"-%d\b" % pid, l)]


def cleanup_checks(t):
    for mode in ("exception", "sigint", "sigterm", "sigkill"):
        child = subprocess.Popen([sys.executable, __file__, "--crash", mode],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        pids = None
        for line in child.stdout:
            m = re.match(r"LAB-UP pids=([\d,]+)", line)
            if m:
                pids = [int(x) for x in m.group(1).split(",")]
                break
        t.check(pids, "crash run (%s) came up" % mode)
        if mode != "exception":
            child.send_signal({"sigint": signal.SIGINT, "sigterm": signal.SIGTERM,
                               "sigkill": signal.SIGKILL}[mode])
        child.stdout.read()
        child.wait(timeout=30)
        # Children of a SIGKILLed harness die by PR_SET_PDEATHSIG.
        lab.wait_until(lambda: not any(os.path.exists("/proc/%d" % p) for p in pids),
                       10, "processes of the %s run to be gone" % mode)
        t.check(True, "%s: processes %s gone" % (mode, pids))
        if mode == "sigkill":
            left = own_namespaces(child.pid)
            t.check(left, "SIGKILL leaves namespaces %s (reaped next run)" % left)
            lab.reap_stale_namespaces()
        left = own_namespaces(child.pid)
        t.check(not left, "%s: exit status %s, no namespace left" % (mode, child.returncode))
        for d in glob.glob("%s/kaproxy-lab-%d-*" % (tempfile.gettempdir(), child.pid)):
            shutil.rmtree(d, ignore_errors=True)  # kept because the run "failed"


def main(t):
    if t.args.crash:
        crash(t)
        return
    full(t)
    if t.args.cleanup:
        cleanup_checks(t)


def extra(ap):
    ap.add_argument("--crash", choices=("exception", "sigint", "sigterm", "sigkill"))
    ap.add_argument("--cleanup", action="store_true")


if __name__ == "__main__":
    lab.run(main, __doc__, extra_args=extra, need_kaproxy=False)
