#!/usr/bin/env bash
# Install what kaproxy needs to build, test and benchmark on Debian 12.
# The package test (tests/package/deb-install.sh) needs dpkg-shlibdeps
# (dpkg-dev), systemd-analyze (systemd) and man (man-db), which a minimal
# Debian 12 system or container may lack; the Kubernetes manifest check
# (tests/package/kubernetes-check.py) needs python3-yaml.
# The page's browser test (tests/integration/49-page-browser.py) needs
# Debian's chromium, node and npm, and playwright-core from
# tests/browser/package-lock.json (npm ci, below).  Scenario 51 compares
# kaproxy with HAProxy, nginx's stream module and socat, so it needs all three.
# Needs root (apt-get).  Safe to run again: apt-get skips what is there.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
	echo "install-deps.sh: run as root (sudo $0)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
	build-essential cmake pkg-config \
	libevent-dev libinih-dev libcmocka-dev \
	python3 python3-yaml iproute2 iptables conntrack tshark procps psmisc curl \
	valgrind haproxy socat nginx libnginx-mod-stream iperf3 prometheus \
	dpkg-dev systemd man-db chromium fonts-dejavu-core >/dev/null
# node and npm: Debian's, unless some node is there already (a NodeSource
# nodejs carries its own npm, which Debian's npm package would conflict with).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
(cd "$(dirname "$0")/../tests/browser" && npm ci --no-audit --no-fund --loglevel=error)
echo "install-deps.sh: build, test and bench dependencies are installed"
