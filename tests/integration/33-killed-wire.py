#!/usr/bin/env python3
"""A peer killed with -9 right after sending is an orderly end on either leg: its kernel sends the data and a FIN, kaproxy logs *_fin, forwards the half-close (FIN after every byte, the connection stays open until the other peer closes) and the other peer sees all bytes then EOF; no RST anywhere on the wire.

Client leg first, then the upstream leg.  The victim has read everything
it was sent, so its kernel closes with FIN, not RST; 100000 bytes are still
in flight when it dies (the other peer reads only after the kill), so
kaproxy must flush them before passing the FIN on.
"""
import lab
import situations


def main(t):
    situations.killed(t)


if __name__ == "__main__":
    lab.run(main, __doc__)
