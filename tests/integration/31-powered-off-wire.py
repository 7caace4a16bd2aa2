#!/usr/bin/env python3
"""A peer powered off (its namespace drops everything) while idle is declared dead by its own leg's keepalive within idle + interval*count, on either leg: on the wire, `count` unanswered probes spaced by the interval, then kaproxy's RST to the other peer, whose socket sees ECONNRESET; logged *_timeout, teardown rst, detect_ms within the bound, every byte counted.

Client leg first (listener c: client 2s/1s/2, upstream 3s/1s/3), then the
upstream leg (listener u: the other way round), bound 4 s each, so a proxy
applying the other leg's values fails the bound.  Measured from the DROP to
the access-log line, as detect_ms, and on the wire from the last segment
the dead peer sent to kaproxy's RST on the other leg.
"""
import lab
import situations


def main(t):
    situations.powered_off(t)


if __name__ == "__main__":
    lab.run(main, __doc__)
