#!/usr/bin/env python3
"""A SIGHUP, SIGUSR1 or SIGUSR2 that reaches kaproxy while it starts waits for its handlers and is then acted on, instead of ending the process (their default action) or being lost; a signal mask its parent left blocked does not stay blocked.

logrotate's rule sends SIGUSR1 to every process of the unit (an old one
draining after a binary upgrade has its own descriptor on the log), and any of
them may be starting at that moment.  The harness starts kaproxy through a
wrapper that blocks SIGHUP and SIGUSR1, sends both to itself (so they are
pending, exactly what a signal arriving before kaproxy's handlers leaves
behind) and execs kaproxy, which inherits the mask and the pending signals.
kaproxy must then, once it runs: reopen the access log (SIGUSR1) and reload
(SIGHUP), each logged once; forward a connection; and take later signals of
both kinds, which a mask left blocked would hold for ever.
"""
import signal

import lab

LISTEN = "%s:7000" % lab.PROXY_CLIENT_IP

WRAPPER = r"""
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP, signal.SIGUSR1})
os.kill(os.getpid(), signal.SIGUSR1)
os.kill(os.getpid(), signal.SIGHUP)
os.execv(sys.argv[1], sys.argv[1:])
"""


def main(t):
    srv = t.server()
    px = t.start_kaproxy({"a": lab.listener(listen=LISTEN)},
                         wrapper=["python3", "-c", WRAPPER])
    px.wait_log("access_log %s: reopened" % t.access_log.path)
    px.wait_log("reloaded ")
    log = px.stderr_text(None)
    t.check(log.count(": reopened") == 1 and log.count("reloaded ") == 1,
            "the SIGUSR1 and SIGHUP pending at start-up were each acted on once")
    t.check(px.alive(), "kaproxy runs on")
    c = t.pair(srv, target=LISTEN)
    t.exchange(c, srv, 1000)
    # The mask it inherited is gone: later signals are taken too.
    px.signal(signal.SIGUSR1)
    px.wait_log(": reopened", count=2)
    px.signal(signal.SIGHUP)
    px.wait_log("reloaded ", count=2)
    t.exchange(c, srv, 1000)
    t.close_pair(c, srv)
    px.drain()
    t.wait_kaproxy_exit(10)


lab.run(main, __doc__)
