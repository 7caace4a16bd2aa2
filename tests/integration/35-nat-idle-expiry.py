#!/usr/bin/env python3
"""Behind a NAT that forgets idle flows (conntrack established timeout 6 s, no loose pickup, INVALID dropped), a client connection without keepalive dies silently: the NAT drops its state, data the server sends never reaches the client, and kaproxy gives up at TCP_USER_TIMEOUT (client_timeout, server reset); with client_keepalive_idle 2s below client_nat_timeout 6s the same connection stays idle for 2.5 NAT timeouts and still carries data both ways.

client (10.77.4.2) - nat (10.77.4.1 | 10.77.1.2, MASQUERADE) - proxy.
Listener bare: client_keepalive off, client_user_timeout 3s.  Listener
kept: client 2s/1s/2, client_nat_timeout 6s.  Both connections run side by
side.  Before that, `kaproxy -t` must refuse (exit 1, FILE:LINE) and
start-up must fail for client_keepalive_idle 6s with client_nat_timeout 6s.
The wire: the kept flow is never silent for 6 s (probes every ~2 s); no
packet reaches the bare client once the NAT forgot it.
"""
import lab
import situations


def main(t):
    situations.nat_expiry(t)


if __name__ == "__main__":
    lab.run(main, __doc__, nat=situations.NAT_TIMEOUT)
