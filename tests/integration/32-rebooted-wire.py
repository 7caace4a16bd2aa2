#!/usr/bin/env python3
"""A peer that reboots (same address, no TCP state) answers kaproxy's next keepalive probe with RST, on either leg: logged *_reset, and kaproxy resets the other peer at once (RST on the wire, ECONNRESET on its socket).

Client leg first, then the upstream leg; the leg under test has idle 2 s,
so the reboot (the namespace silenced, its processes killed, namespace and
link rebuilt: nothing leaves the old stack) is complete before the first
probe.  Measured from the end of the reboot to the access-log line (within
the idle time).  Checked on the wire: the probe (SND.NXT - 1), the rebooted
host's RST with SEG.SEQ = the probe's ACK, kaproxy's RST on the other leg.
"""
import lab
import situations


def main(t):
    situations.rebooted(t)


if __name__ == "__main__":
    lab.run(main, __doc__)
