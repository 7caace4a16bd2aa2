#!/usr/bin/env python3
"""With keepalive off on a leg, a path that breaks while data is in flight is still detected within TCP_USER_TIMEOUT (3 s), on either leg: the wire shows no probes, retransmissions only, then kaproxy's RST to the other peer (ECONNRESET); logged *_timeout.

Listener c: client_keepalive = off, client_user_timeout = 3s; listener u:
the same on the upstream leg.  The leg first stays idle 1.5 s (longer than
its keepalive_idle of 1 s: no probe may appear), then its peer's namespace
drops everything and the other peer sends 50000 bytes.  Measured from that
send to the access-log line, and on the wire from the first unacknowledged
segment to kaproxy's RST.  (09 covers the upstream with keepalive on.)
"""
import lab
import situations


def main(t):
    situations.path_broken(t)


if __name__ == "__main__":
    lab.run(main, __doc__)
