#!/usr/bin/env python3
"""Under a flood past max_connections kaproxy resets each excess client at once (accepts it and resets it, never queues it), counts every one exactly in /metrics, keeps serving the connections it holds, serves a full new set once they close, and ends with its descriptors and memory back where they were before the load.

max_connections = 1000, with one worker, then with two (admission counts
over all workers).  1,000 echo clients connect and are held open (each
sends 1,000 bytes and gets them back, verified); then 2,000 more clients
arrive at once: every one must be reset within FLOOD_BOUND_S of the first,
none may reach the server, and kaproxy_connections_refused_total{reason=
"max_connections"} must be exactly 2,000.  The 1,000 then exchange 1,000
bytes more and close; 1,000 new clients are all served, none refused.  Both
client sets run in one crowd process each (crowd.py).

Leak check: descriptors back to the start-up baseline exactly (kaproxy may
keep up to PUMP_POOL_PIPES empty pipes for reuse; every pipe it holds must
be empty).  RSS: the second 1,000 connections reuse what the first 1,000
freed, so RSS after round 2 may exceed RSS after round 1 by at most
ROUND_SLACK_KIB (one worker only: with two, round 2 grew RSS by 40-60 KiB
over round 1 in every run, probably because each thread allocates from its
own malloc arena and a connection may land on the other worker in round 2);
against the start-up baseline the slack is the high-water mark of 1,000
connections (see RSS_SLACK_KIB).
With an ASan build, RSS reflects the sanitizer's quarantine and shadow, not
kaproxy, so only descriptors are checked.
"""
import time

import lab

MAX = 1000
EXCESS = 2000
TARGET = "%s:7000" % lab.PROXY_CLIENT_IP
FLOOD_BOUND_S = 5.0      # all 2,000 reset, from the first connect: 0.1-0.2 s measured
POOL_PIPES = 64          # PUMP_POOL_PIPES
# malloc keeps the heap at its high-water mark: the freed sessions lie
# between libevent's per-descriptor slots, which are never freed, so their
# pages stay resident (measured: RSS after the load stays within a few KiB
# of RSS while holding 1,000).  The slack is that high-water mark at the
# documented bound of 1 KiB per idle connection (README, Data path and
# memory); a leak shows in the second round, which must not grow RSS.
RSS_SLACK_KIB = MAX * 1
ROUND_SLACK_KIB = 64     # a second identical round reuses the first's memory


def refused(admin, name):
    series = 'kaproxy_connections_refused_total{listener="%s",reason="max_connections"}' % name
    return admin.metrics()[series]


def active(admin, name):
    return admin.metrics()['kaproxy_connections_active{listener="%s"}' % name]


def wait_closed_lines(t, name, n, timeout):
    lines = lab.wait_until(lambda: len(t.access_log.closed(name)) >= n
                           and t.access_log.closed(name), timeout,
                           "%d access-log lines" % n, interval=0.2)
    t.check(len(lines) == n, "exactly %d access-log lines (got %d)" % (n, len(lines)))
    return lines


def serve(t, srv, name, rounds_before):
    """MAX echo clients connect, each exchanges 1,000 bytes: all served."""
    c = t.crowd("client", name, expect="echo")
    r = c.ok("connect %d %s 30" % (MAX, TARGET), 35)
    t.check(r["connected"] == str(MAX), "%s: all %d clients connect (%s)" % (name, MAX, r))
    srv.wait("accepted", MAX * (rounds_before + 1), 30)
    c.ok("send 1000")
    r = c.wait("received", 1000, 30)
    t.check(r["mismatch"] == "0" and r["open"] == str(MAX),
            "%s: every one of the %d gets its 1,000 bytes back intact (%s)" % (name, MAX, r))
    return c


def overload(t, workers):
    name = "w%d" % workers
    upstream = "%s:%d" % (lab.SERVER_IP, 7100 + workers)
    srv = t.crowd("server", "server-" + name, listen=upstream)
    srv.ok("echo on")
    px = t.start_kaproxy({name: lab.listener(upstream=upstream, client=(60, 10, 3),
                                             upstream_policy=(60, 10, 3))},
                         {"max_connections": str(MAX), "admin_listen": lab.ADMIN_LISTEN,
                          "log_level": "info", "workers": str(workers)})
    admin = lab.Admin(t)
    base = lab.proc_usage(px.pid)
    lab.log("%s: baseline after start-up: %s" % (name, base))

    held = serve(t, srv, "held-" + name, 0)
    t.check(active(admin, name) == MAX, "kaproxy_connections_active is %d" % MAX)
    loaded = lab.proc_usage(px.pid)
    lab.log("holding %d: %s, %.2f KiB RSS per connection" % (
        MAX, loaded, (loaded["rss_kib"] - base["rss_kib"]) / MAX))

    flood = t.crowd("client", "flood-" + name)
    started = time.monotonic()
    r = flood.ok("connect %d %s 30" % (EXCESS, TARGET), 35)
    t.check(r["failed"] == "0",
            "every excess client's handshake completes: kaproxy accepts it, no SYN is "
            "refused or left unanswered (%s)" % r)
    r = flood.wait("ended", EXCESS, FLOOD_BOUND_S)
    spent = time.monotonic() - started
    t.check(r["reset"] == str(EXCESS) and r["eof"] == "0",
            "all %d excess clients are reset, none gets an orderly close (%s)" % (EXCESS, r))
    lab.log("MEASURE workers %d: %d excess clients connected and reset in %.2fs"
            % (workers, EXCESS, spent))
    t.check(refused(admin, name) == EXCESS,
            "kaproxy_connections_refused_total{reason=max_connections} is exactly %d" % EXCESS)
    t.check(srv.ok("stats")["accepted"] == str(MAX), "no excess client reached the server")
    t.check(active(admin, name) == MAX, "still %d active" % MAX)
    t.check(not t.access_log.closed(name), "the refused clients leave no access-log line "
            "(they never were sessions), and the held ones are still open")

    held.ok("send 1000")
    r = held.wait("received", 2000, 30)
    t.check(r["mismatch"] == "0" and r["open"] == str(MAX),
            "after the flood the %d held clients still exchange data intact (%s)" % (MAX, r))
    held.ok("close")
    lines = wait_closed_lines(t, name, MAX, 30)
    t.check_closed(lines[0], "client_fin", "none", bytes_from_client=2000, bytes_to_client=2000)
    t.check(all(l["close_reason"] == "client_fin" and l["bytes_to_client"] == 2000 for l in lines),
            "every held connection ends client_fin with 2,000 bytes each way")
    lab.wait_until(lambda: active(admin, name) == 0, 10, "no connection active")
    round1 = lab.proc_usage(px.pid)
    lab.log("after round 1 (%d served, %d refused): %s" % (MAX, EXCESS, round1))

    fresh = serve(t, srv, "fresh-" + name, 1)
    t.check(refused(admin, name) == EXCESS, "none of the %d new clients is refused" % MAX)
    fresh.ok("close")
    wait_closed_lines(t, name, 2 * MAX, 30)
    lab.wait_until(lambda: active(admin, name) == 0, 10, "no connection active")
    t.check(admin.metrics()['kaproxy_connections_total{listener="%s"}' % name] == 2 * MAX,
            "kaproxy_connections_total counts the %d served, not the refused" % (2 * MAX))

    if lab.asan_build(t.kaproxy_bin):
        lab.log("ASan build: RSS not judged (quarantine, shadow memory)")
        lab.wait_back_to_baseline(px.pid, base, 1 << 30, timeout=15, pooled_pipes=POOL_PIPES)
    else:
        end = lab.wait_back_to_baseline(px.pid, base, RSS_SLACK_KIB, timeout=15,
                                        pooled_pipes=POOL_PIPES)
        lab.log("MEASURE workers %d RSS: baseline %d KiB, %d held %d KiB, after round 1 %d KiB, "
                "after round 2 %d KiB" % (workers, base["rss_kib"], MAX, loaded["rss_kib"],
                                          round1["rss_kib"], end["rss_kib"]))
        if workers == 1:
            t.check(end["rss_kib"] <= round1["rss_kib"] + ROUND_SLACK_KIB,
                    "a second round of %d connections reuses the first's memory: RSS %d KiB "
                    "after it, %d KiB after round 1 (slack %d KiB)" % (
                        MAX, end["rss_kib"], round1["rss_kib"], ROUND_SLACK_KIB))
    px.drain()
    t.wait_kaproxy_exit()


def main(t):
    for workers in (1, 2):
        overload(t, workers)


if __name__ == "__main__":
    lab.run(main, __doc__)
