#!/usr/bin/env python3
"""log_interval makes a long-lived connection visible before it ends: one "event":"progress" record per interval of its age, with the bytes so far and both legs' TCP_INFO and no close_reason, then its one close record; a listener without it writes none.

Listener "watched" has log_interval 1s, "quiet" has none.  A connection on
each moves 1000 bytes each way, then 2000 more after the first progress
record, and closes after about 3.5 s.
"""
import time

import lab

TCP_KEYS = ("state", "rtt_us", "retrans", "probes", "unacked", "last_data_recv_ms",
            "last_ack_recv_ms")


def main(t):
    srv = t.server(backlog=8)
    t.start_kaproxy({
        "watched": lab.listener(log_interval="1s"),
        "quiet": lab.listener(listen="%s:7010" % lab.PROXY_CLIENT_IP),
    })
    conns = []
    for name, port in (("watched", 7000), ("quiet", 7010)):
        cli = t.pair(srv, target="%s:%d" % (lab.PROXY_CLIENT_IP, port), name=name)
        srv.ok("use %d" % cli.server_conn)
        t.exchange(cli, srv, 1000)
        conns.append((name, cli, cli.ok("info")["local"], cli.server_conn))
    watched_addr = conns[0][2]

    def progress(name, addr):
        t.access_log.poll()
        return [r for r in t.access_log.records if r["listener"] == name
                and r["client"] == addr and r["event"] == "progress"]

    first = lab.wait_until(lambda: progress("watched", watched_addr), 3,
                           "the first progress record")[0]
    t.check("close_reason" not in first and "teardown" not in first,
            "progress: no close_reason or teardown while open")
    t.check(first["bytes_from_client"] == 1000 and first["bytes_to_client"] == 1000,
            "progress: bytes so far (%d, %d)" % (first["bytes_from_client"],
                                                  first["bytes_to_client"]))
    for leg in ("client_tcp", "upstream_tcp"):
        t.check(all(k in first[leg] for k in TCP_KEYS) and first[leg]["state"] == "established",
                "progress: %s figures of an open leg (%s)" % (leg, first[leg]))
    for name, cli, addr, conn in conns:
        srv.ok("use %d" % conn)
        t.exchange(cli, srv, 2000)
    lab.wait_until(lambda: len(progress("watched", watched_addr)) >= 3, 5,
                   "three progress records")
    for name, cli, addr, conn in conns:
        cli.ok("shutdown_wr")
        srv.ok("use %d" % conn)
        t.check(srv.cmd("wait_close 5").status == "EOF", "%s: the client's FIN arrives" % name)
        srv.ok("shutdown_wr")
        t.check(cli.cmd("wait_close 5").status == "EOF", "%s: the server's FIN arrives" % name)
        rec = t.access_log.wait(lambda r: r["client"] == addr and r["event"] == "close", 5,
                                "the close record of %s" % name)
        t.check_closed(rec, "client_fin", "none", bytes_from_client=3000, bytes_to_client=3000)

    recs = progress("watched", watched_addr)
    close = t.access_log.wait(lambda r: r["client"] == watched_addr and r["event"] == "close")
    ages = [r["duration_ms"] for r in recs]
    lab.log("progress ages %s ms, closed at %d ms" % (ages, close["duration_ms"]))
    for k, age in enumerate(ages, start=1):
        t.check(k * 1000 <= age <= k * 1000 + 1000 * lab.SLACK,
                "progress %d written once its age passed %d s (%d ms)" % (k, k, age))
    whole = close["duration_ms"] // 1000
    t.check(len(recs) in (whole - 1, whole),
            "one progress record per whole second of the connection's %d ms (%d)"
            % (close["duration_ms"], len(recs)))
    t.check(recs[-1]["bytes_from_client"] == 3000, "later progress records count the later bytes")
    t.check(not progress("quiet", conns[1][2]), "quiet: no progress record without log_interval")
    closes = [r for r in t.access_log.records if r["client"] == watched_addr
              and r["event"] == "close"]
    t.check(len(closes) == 1, "exactly one close record (%d)" % len(closes))


if __name__ == "__main__":
    lab.run(main, __doc__)
