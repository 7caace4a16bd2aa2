#!/usr/bin/env python3
"""A peer powered off (its namespace drops everything) is declared dead on either leg within idle + interval*count: on the wire, `count` unanswered probes spaced by the interval, then kaproxy's RST to the other peer, whose socket sees ECONNRESET; logged *_timeout, teardown rst.

Client leg first (listener c: client 2s/1s/2, upstream 3s/1s/3), then the
upstream leg (listener u: the other way round), bound 4 s each.  Measured
from the DROP to the access-log line, and on the wire from the last segment
the dead peer sent to kaproxy's RST on the other leg.  Extends 02/03 (the
socket side) with the wire.
"""
import lab
import situations


def main(t):
    situations.powered_off(t)


if __name__ == "__main__":
    lab.run(main, __doc__)
