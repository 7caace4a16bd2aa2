#!/usr/bin/env python3
"""A peer that reboots (same address, no TCP state) answers kaproxy's next keepalive probe with RST, on either leg: logged *_reset, and kaproxy resets the other peer at once (RST on the wire, ECONNRESET on its socket).

Client leg first, then the upstream leg (07 covers the server on the
socket side); the leg under test has idle 2 s, so the reboot is complete
before the first probe.  Checked on the wire: the probe (SND.NXT - 1), the
rebooted host's RST with SEG.SEQ = the probe's ACK, kaproxy's RST on the
other leg.
"""
import lab
import situations


def main(t):
    situations.rebooted(t)


if __name__ == "__main__":
    lab.run(main, __doc__)
