#!/usr/bin/env python3
"""reload_on_change = on reloads, without any signal, when the configuration file's content changes however it is replaced (an editor's rename, a Kubernetes ConfigMap's ..data swap), refuses a broken file and keeps serving, ignores a touch or a rewrite with the same bytes, and with the key off nothing happens until SIGHUP.

Each reload is awaited in kaproxy's log ("reloaded", "reload failed"; a
change with the same content logs, at debug, that it does not reload), and
each applied one is proven by connecting through the listener it added.

1. A plain file named by a relative path (kaproxy started in its directory
   with -c kaproxy.ini), changed as an editor saves: a new file renamed over
   it.  (a) a listener added; (d) the file touched, then rewritten with the
   same bytes: no reload; (c) a broken file refused, the running listeners
   still serve, and the good file after it is applied; (e) a file that turns
   the key off is applied and kaproxy stops watching (no inotify descriptor
   left); a change after that is not applied until SIGHUP; a SIGHUP to a file
   with the key on watches again.
2. A ConfigMap volume, exactly as kubelet's atomic writer lays it out:
   kaproxy.ini -> ..data/kaproxy.ini, ..data -> ..TIMESTAMP; an update makes
   a new ..TIMESTAMP directory, a ..data_tmp symlink to it, renames ..data_tmp
   over ..data and removes the old directory.  (b) a listener added; (c) a
   broken version refused, then a good one applied; (d) a new version with the
   same content (another key of the ConfigMap changed): no reload; (f) the
   directory moved away: kaproxy says it stops watching and serves on; moved
   back, SIGHUP watches it again and the next version is applied.
"""
import os
import shutil
import signal

import lab

P = lab.PROXY_CLIENT_IP
A, B, C, D = ("%s:%d" % (P, port) for port in (7000, 7010, 7020, 7030))
BROKEN = "[global]\nno_such_key = 1\n"
# CONFWATCH_MAX_DELAY_MS (the longest a burst defers the read) and the
# harness's slack: a change not acted on within this was ignored.
IGNORED_AFTER = 2.0 + lab.SLACK
RELOAD_WAIT = 10.0
# kaproxy's verdict on a change, as it logs it (the last one at debug, the
# lab's log level).
VERDICTS = {"reloaded": "reloaded ", "failed": "reload failed",
            "unchanged": "same content as the last reload read: no reload"}


class Kaproxy(lab.Kaproxy):
    """kaproxy started in directory cwd with `-c config_arg` (relative or
    not); env execs it, so the PID is kaproxy's."""

    def __init__(self, t, cwd, config_arg, name):
        self.ini_path = os.path.join(cwd, config_arg)
        lab.Proc.__init__(self, t, t.ns["proxy"],
                          ["env", "--chdir=" + cwd, t.kaproxy_bin, "-c", config_arg], name)


def inotify_fds(pid):
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            n += os.readlink("/proc/%d/fd/%s" % (pid, fd)) == "anon_inode:inotify"
        except OSError:
            pass
    return n


def main(t):
    srv = t.server()
    outcome = {k: 0 for k in VERDICTS}

    def ini(names, on="on"):
        addr = {"a": A, "b": B, "c": C, "d": D}
        return t.kaproxy_ini({n: lab.listener(listen=addr[n]) for n in names},
                             {"reload_on_change": on})

    def expect(px, what, why):
        """Wait for kaproxy's verdict `what` on the change just made, and
        check that it is the only new verdict."""
        outcome[what] += 1
        px.wait_log(VERDICTS[what], outcome[what], timeout=RELOAD_WAIT)
        err = px.stderr_text(None)
        seen = {k: err.count(text) for k, text in VERDICTS.items()}
        t.check(seen == outcome, "%s: %s, and nothing else (verdicts so far %s)"
                % (why, what, seen))

    def serves(listen, name):
        cli = t.pair(srv, target=listen, name=name)
        t.exchange(cli, srv)
        t.close_pair(cli, srv)
        t.check(True, "a connection through %s carries bytes both ways" % listen)

    def refused(listen, name):
        r = t.client(name).cmd("connect %s 3" % listen)
        t.check(r.status == "ERR" and r.get("errno") == "ECONNREFUSED",
                "%s is not listening (%s)" % (listen, r))

    # --- 1. a plain file, by a relative path, changed as an editor saves -------
    plain = os.path.join(t.dir, "plain")
    os.mkdir(plain)
    with open(os.path.join(plain, "kaproxy.ini"), "w") as f:
        f.write(ini("a"))
    px = Kaproxy(t, plain, "kaproxy.ini", "kaproxy")
    t.kaproxy = px
    t.wait_listening(px, {A})
    px.wait_log("reload_on_change: watching %s for changes to kaproxy.ini" % plain)
    t.check(inotify_fds(px.pid) == 1, "kaproxy holds one inotify descriptor")

    # (a) a listener added: reloaded without a signal.
    px.write_ini(ini("ab"))
    expect(px, "reloaded", "editor's rename adding listener b")
    t.check(px.stderr_text(None).count("kaproxy.ini changed on disk: reloading") == 1,
            "the reload was the watch's (no signal was sent)")
    t.wait_listening(px, {A, B}, 5)
    serves(B, "client-b")

    # (d) touched, then the same bytes renamed over it: no reload.
    os.utime(px.ini_path)
    expect(px, "unchanged", "file touched")
    px.write_ini(ini("ab"))
    expect(px, "unchanged", "the same bytes renamed over the file")

    # (c) a broken file: refused, b still serves; the good one after it applies.
    px.write_ini(BROKEN)
    expect(px, "failed", "broken file renamed over")
    t.check(px.alive(), "kaproxy survives the broken file")
    serves(B, "client-b-kept")
    px.write_ini(ini("ac"))
    expect(px, "reloaded", "good file after the broken one (b removed, c added)")
    t.wait_listening(px, {A, C}, 5)
    serves(C, "client-c")
    refused(B, "client-b-gone")
    t.check(inotify_fds(px.pid) == 1, "still one inotify descriptor after three reloads")

    # (e) the key turned off by a change: applied, and the watch stops.
    px.write_ini(ini("ac", on="off"))
    expect(px, "reloaded", "file turning reload_on_change off")
    px.wait_log("reload_on_change off: no longer watching")
    t.check(inotify_fds(px.pid) == 0, "kaproxy holds no inotify descriptor with the key off")
    px.write_ini(ini("acd", on="off"))
    # Nothing is logged for a change nobody watches: this waits out the
    # longest a watch could take, bounded, then checks nothing happened.
    try:
        lab.wait_until(lambda: px.stderr_text(None).count(VERDICTS["reloaded"])
                       > outcome["reloaded"], IGNORED_AFTER, "a reload")
        reloaded = True
    except lab.Failure:
        reloaded = False
    t.check(not reloaded, "with reload_on_change off, a change is left alone (%.1fs)"
            % IGNORED_AFTER)
    refused(D, "client-d-not-yet")
    px.signal(signal.SIGHUP)
    expect(px, "reloaded", "SIGHUP with the key off")
    t.wait_listening(px, {A, C, D}, 5)
    serves(D, "client-d")

    # ...and on again by SIGHUP: watching again, a change reloads.
    px.write_ini(ini("acd"))
    px.signal(signal.SIGHUP)
    expect(px, "reloaded", "SIGHUP turning reload_on_change on")
    px.wait_log("reload_on_change: watching", 2)
    t.check(inotify_fds(px.pid) == 1, "one inotify descriptor again")
    px.write_ini(ini("ab"))
    expect(px, "reloaded", "editor's rename with the key on again")
    t.wait_listening(px, {A, B}, 5)
    serves(B, "client-b-again")
    px.drain()
    t.wait_kaproxy_exit()

    # --- 2. a ConfigMap volume ------------------------------------------------
    vol = os.path.join(t.dir, "configmap")
    os.mkdir(vol)
    stamps = []

    def publish(text):
        """kubelet's atomic writer: new timestamped directory, ..data_tmp ->
        it, renamed over ..data, the old directory removed."""
        stamp = "..2026_11_25_20_%02d_00.%09d" % (len(stamps), len(stamps) + 1)
        os.mkdir(os.path.join(vol, stamp))
        with open(os.path.join(vol, stamp, "kaproxy.ini"), "w") as f:
            f.write(text)
        os.symlink(stamp, os.path.join(vol, "..data_tmp"))
        os.rename(os.path.join(vol, "..data_tmp"), os.path.join(vol, "..data"))
        if stamps:
            shutil.rmtree(os.path.join(vol, stamps[-1]))
        stamps.append(stamp)

    publish(ini("a"))
    os.symlink("..data/kaproxy.ini", os.path.join(vol, "kaproxy.ini"))
    for k in outcome:
        outcome[k] = 0
    px = Kaproxy(t, t.dir, os.path.join(vol, "kaproxy.ini"), "kaproxy-configmap")
    t.kaproxy = px
    t.wait_listening(px, {A})
    px.wait_log("reload_on_change: watching %s for changes to kaproxy.ini" % vol)

    # (b) a new version adding listener b.
    publish(ini("ab"))
    expect(px, "reloaded", "..data swapped to a version adding listener b")
    t.wait_listening(px, {A, B}, 5)
    serves(B, "client-k8s-b")

    # (c) a broken version refused, b still serves; then a good one.
    publish(BROKEN)
    expect(px, "failed", "..data swapped to a broken version")
    serves(B, "client-k8s-b-kept")
    publish(ini("ac"))
    expect(px, "reloaded", "..data swapped to a good version (b removed, c added)")
    t.wait_listening(px, {A, C}, 5)
    serves(C, "client-k8s-c")
    refused(B, "client-k8s-b-gone")

    # (d) a new version with the same content: no reload.
    publish(ini("ac"))
    expect(px, "unchanged", "..data swapped to a version with the same content")
    t.check(inotify_fds(px.pid) == 1, "one inotify descriptor after four ..data swaps")

    # (f) the directory moved away: kaproxy says so, stops watching, serves
    # on; back in place, a reload (SIGHUP) watches it again.
    os.rename(vol, vol + ".moved")
    px.wait_log("reload_on_change: %s is gone" % vol)
    t.check(inotify_fds(px.pid) == 0, "no inotify descriptor once the directory has gone")
    serves(C, "client-k8s-c-unwatched")
    os.rename(vol + ".moved", vol)
    px.signal(signal.SIGHUP)
    expect(px, "reloaded", "SIGHUP with the directory back")
    px.wait_log("reload_on_change: watching %s" % vol, 2)
    publish(ini("abc"))
    expect(px, "reloaded", "..data swapped (b added back) after the watch came back")
    t.wait_listening(px, {A, B, C}, 5)
    serves(B, "client-k8s-b-back")


if __name__ == "__main__":
    lab.run(main, __doc__)
