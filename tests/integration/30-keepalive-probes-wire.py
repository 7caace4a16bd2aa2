#!/usr/bin/env python3
"""On both legs of an idle connection kaproxy's keepalive probes are on the wire at the configured idle (SEG.SEQ = SND.NXT - 1, no payload), each answered by an ACK; the connection stays up and carries data afterwards.

Client leg 2s/1s/3, upstream leg 3s/1s/3 (different, so a value applied to
the wrong socket shows), watched for 6.6 s with dumpcap on both veths of the
proxy namespace.  The first probe must come `idle` after the last segment
received on that leg; an answered probe refreshes the receive timestamp, so
the next one comes `idle` after its ACK (the interval only spaces
unanswered probes: see 31).  Every segment the proxy sends on the idle leg
must be such a probe, and the peers send none of their own.
"""
import lab
import situations


def main(t):
    situations.normal(t)


if __name__ == "__main__":
    lab.run(main, __doc__)
