#!/usr/bin/env bash
# Goal: the Debian package an operator installs is complete and behaves as a
# package should, through install, upgrade, removal and purge.
#
# From BUILD_DIR (a configured and built tree) `cpack -G DEB` makes the
# package twice into a temporary directory: at the project's version, and at
# VERSION+upgradetest for the upgrade.  Then:
#  - contents: exactly the binary at /usr/sbin/kaproxy (stripped), the unit at
#    /lib/systemd/system/kaproxy.service, /etc/kaproxy/kaproxy.ini and the
#    logrotate rule (both conffiles, nothing else), both manual pages
#    gzip-compressed; each file's bytes are the source tree's;
#  - Depends names exactly the packages that ship the libraries in the
#    binary's NEEDED entries (objdump -p, then dpkg -S on this machine),
#    and procps for the unit's ExecReload (/bin/kill);
#  - dpkg installs it into a private root (dpkg --root, its own database
#    seeded with this machine's entries for those packages, so dependencies
#    are checked but nothing outside the root is touched); the ExecStartPre
#    and ExecReload check commands of the installed unit, run with the root's
#    paths, pass; `systemd-analyze verify --root` accepts the unit with no
#    message at all (the root gets a copy of this machine's systemd units,
#    outside the package's directory, so targets resolve), which also checks
#    that ExecStart's binary is there and executable and that the manual pages
#    named in Documentation= are found in the root;
#  - upgrade: a local change to /etc/kaproxy/kaproxy.ini survives installing
#    the higher version, with no --force-conf* option and stdin at /dev/null,
#    so a conffile prompt would fail the install;
#  - `dpkg -r` removes the program and keeps both conffiles, `dpkg -P` removes
#    them and leaves no file of the package behind.
# Not checked here: that systemd starts the service (no systemd runs inside
# the private root), and logrotate itself.
#
# Needs root (dpkg); exits 77 without it.  Usage: deb-install.sh BUILD_DIR
set -euo pipefail
build=$(cd "${1:?usage: deb-install.sh BUILD_DIR}" && pwd)
src=$(cd "$(dirname "$0")/../.." && pwd)

[ "$(id -u)" = 0 ] || { echo "needs root (dpkg): skipped"; exit 77; }
for tool in cpack dpkg dpkg-deb dpkg-query objdump readelf systemd-analyze man gzip; do
	command -v "$tool" >/dev/null ||
		{ echo "FAIL: $tool is missing (tools/install-deps.sh installs it)"; exit 1; }
done

work=$(mktemp -d /tmp/kaproxy-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# Every dpkg step is bounded, reads no terminal, and keeps its output.
dpkg_in_root() { timeout 60 dpkg --root="$root" "$@" </dev/null >"$work/dpkg.out" 2>&1; }

version=$(sed -n 's/^set(CPACK_PACKAGE_VERSION "\(.*\)")$/\1/p' "$build/CPackConfig.cmake")
[ -n "$version" ] || { echo "FAIL: no CPACK_PACKAGE_VERSION in $build/CPackConfig.cmake"; exit 1; }
arch=$(dpkg --print-architecture)
for v in "$version" "$version+upgradetest"; do
	timeout 120 cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/$v" \
		-D CPACK_PACKAGE_VERSION="$v" >"$work/cpack.out" 2>&1 ||
		{ cat "$work/cpack.out"; echo "FAIL: cpack -G DEB ($v)"; exit 1; }
done
deb1=$work/$version/kaproxy_${version}_$arch.deb
deb2=$work/$version+upgradetest/kaproxy_${version}+upgradetest_$arch.deb
if [ ! -f "$deb1" ] || [ ! -f "$deb2" ]; then
	ls -R "$work"
	echo "FAIL: no .deb where expected"
	exit 1
fi

echo "== $(basename "$deb1")"
dpkg-deb --info "$deb1"
dpkg-deb --contents "$deb1"

# --- what the package holds -------------------------------------------------
files=$(dpkg-deb --contents "$deb1" | awk '$1 !~ /^d/ { print $1, $6 }' | sort)
want=$(sort <<'EOF'
-rw-r--r-- ./etc/kaproxy/kaproxy.ini
-rw-r--r-- ./etc/logrotate.d/kaproxy
-rw-r--r-- ./lib/systemd/system/kaproxy.service
-rw-r--r-- ./usr/share/man/man5/kaproxy.ini.5.gz
-rw-r--r-- ./usr/share/man/man8/kaproxy.8.gz
-rwxr-xr-x ./usr/sbin/kaproxy
EOF
)
[ "$files" = "$want" ] || fail "files and modes are
$files
expected
$want"
owners=$(dpkg-deb --contents "$deb1" | awk '{ print $2 }' | sort -u)
[ "$owners" = root/root ] || fail "owners are $owners, expected root/root only"

conffiles=$({ dpkg-deb --info "$deb1" conffiles 2>/dev/null || true; } | sort)
[ "$conffiles" = "$(printf '/etc/kaproxy/kaproxy.ini\n/etc/logrotate.d/kaproxy')" ] ||
	fail "conffiles are: $conffiles"

[ "$(dpkg-deb --field "$deb1" Package)" = kaproxy ] || fail "Package is not kaproxy"
[ "$(dpkg-deb --field "$deb1" Version)" = "$version" ] || fail "Version is not $version"
[ "$(dpkg-deb --field "$deb1" Architecture)" = "$arch" ] || fail "Architecture is not $arch"

dpkg-deb --extract "$deb1" "$work/unpacked"
same() { cmp -s "$1" "$2" || fail "$2 differs from $1"; }
same "$src/conf/kaproxy.ini" "$work/unpacked/etc/kaproxy/kaproxy.ini"
same "$src/packaging/kaproxy.logrotate" "$work/unpacked/etc/logrotate.d/kaproxy"
same "$src/packaging/kaproxy.service" "$work/unpacked/lib/systemd/system/kaproxy.service"
for page in man8/kaproxy.8 man5/kaproxy.ini.5; do
	gz=$work/unpacked/usr/share/man/$page.gz
	if gzip -t "$gz" 2>/dev/null; then
		gzip -dc "$gz" >"$work/page"
		same "$src/packaging/$(basename "$page")" "$work/page"
	else
		fail "$page.gz is not gzip"
	fi
done
bin=$work/unpacked/usr/sbin/kaproxy
if readelf -S --wide "$bin" | grep -Eq '\.(symtab|debug_info) '; then
	fail "/usr/sbin/kaproxy is not stripped"
fi

# Depends: each package that ships one of the binary's NEEDED libraries or a
# program the unit runs, and no other.  The library is found the way the loader finds it (ldd), and its
# owner asked for under both /lib and /usr/lib (merged /usr).
owner_of() {
	local path=$1 p
	for p in "$path" "${path#/usr}" "/usr$path"; do
		dpkg-query -S "$p" 2>/dev/null | grep -v '^diversion ' |
			awk -F': ' 'NR == 1 { sub(/:.*/, "", $1); print $1 }' | grep . && return 0
	done
	return 1
}
needed_pkgs=
for soname in $(objdump -p "$bin" | awk '$1 == "NEEDED" { print $2 }'); do
	path=$(ldd "$bin" | awk -v s="$soname" '$1 == s { print $3 }')
	[ -n "$path" ] || { fail "ldd does not resolve $soname"; continue; }
	pkg=$(owner_of "$path") || { fail "no package on this machine ships $path"; continue; }
	needed_pkgs+="$pkg"$'\n'
done
# The unit's ExecReload runs /bin/kill: its package is needed as well.
if grep -q '^ExecReload=/bin/kill ' "$work/unpacked/lib/systemd/system/kaproxy.service"; then
	needed_pkgs+="$(owner_of /bin/kill)"$'\n' || fail "no package on this machine ships /bin/kill"
fi
needed_pkgs=$(sort -u <<<"${needed_pkgs%$'\n'}")
depends=$(dpkg-deb --field "$deb1" Depends)
depends_pkgs=$(tr ',' '\n' <<<"$depends" | sed 's/^ *//; s/[ (].*//' | sort -u)
[ -n "$needed_pkgs" ] || fail "no package found for the binary's NEEDED libraries"
[ "$depends_pkgs" = "$needed_pkgs" ] ||
	fail "Depends names
$depends_pkgs
but the binary's libraries come from
$needed_pkgs"
echo "Depends: $depends"

# --- install into a private root ---------------------------------------------
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
: >"$root/var/lib/dpkg/available"
# The root's database knows the dependencies as installed (their files are
# this machine's, which the binary then runs with): each one Depends names,
# so a Depends on a package this machine lacks fails the install.
for pkg in $depends_pkgs; do
	if dpkg-query -s "$pkg" >"$work/stanza" 2>/dev/null; then
		cat "$work/stanza" && echo
		: >"$root/var/lib/dpkg/info/$(dpkg-query -W -f='${binary:Package}' "$pkg").list"
	fi
done >"$root/var/lib/dpkg/status"

installed_version() { dpkg-query --root="$root" -W -f='${Version}' kaproxy 2>/dev/null; }
status_of() { dpkg-query --root="$root" -W -f='${db:Status-Abbrev}' kaproxy 2>/dev/null | tr -d ' '; }

dpkg_in_root --install "$deb1" || { cat "$work/dpkg.out"; echo "FAIL: dpkg --install $version"; exit 1; }
cat "$work/dpkg.out"
! grep -qi 'warning' "$work/dpkg.out" || fail "dpkg warned while installing"
[ "$(status_of)" = ii ] || fail "status after install is '$(status_of)', expected ii"
[ "$(installed_version)" = "$version" ] || fail "installed version is $(installed_version)"
for f in usr/sbin/kaproxy lib/systemd/system/kaproxy.service etc/kaproxy/kaproxy.ini \
	etc/logrotate.d/kaproxy usr/share/man/man8/kaproxy.8.gz usr/share/man/man5/kaproxy.ini.5.gz; do
	[ -f "$root/$f" ] || fail "/$f is not installed"
done
"$root/usr/sbin/kaproxy" -V | grep -qF "$version" || fail "kaproxy -V does not say $version"

# The unit's own check commands, with the root's paths: ExecStartPre and
# ExecReload each run `kaproxy -t` (and nothing else runs kaproxy there,
# since this would start the daemon), and it passes.
unit=$root/lib/systemd/system/kaproxy.service
for key in ExecStartPre ExecReload; do
	checks=0
	while read -r cmd; do
		case $cmd in
		"/usr/sbin/kaproxy -t "*) ;;
		/usr/sbin/kaproxy*) fail "$key runs kaproxy without -t first: '$cmd'"; continue ;;
		*) continue ;;
		esac
		checks=$((checks + 1))
		rooted=${cmd//\/usr\/sbin\/kaproxy/$root/usr/sbin/kaproxy}
		rooted=${rooted//\/etc\/kaproxy\//$root/etc/kaproxy/}
		echo "$key: $rooted"
		# shellcheck disable=SC2086 # the unit's command line, split as systemd would
		timeout 10 $rooted || fail "$key '$cmd' fails on the installed configuration"
	done < <(sed -n "s/^$key=//p" "$unit" 2>/dev/null)
	[ "$checks" = 1 ] || fail "$key runs 'kaproxy -t' $checks times, expected once"
done

# systemd-analyze verify resolves the unit's dependencies (sysinit.target,
# network-online.target, ...) inside the root, so the root gets this
# machine's units, in /usr/lib/systemd/system: not the package's directory,
# and never this machine's own kaproxy.service, should it have one.
mkdir -p "$root/usr/lib/systemd/system"
cp -a /lib/systemd/system/. "$root/usr/lib/systemd/system/"
rm -f "$root/usr/lib/systemd/system/kaproxy.service"
if MANPATH=$root/usr/share/man timeout 30 systemd-analyze verify --root="$root" kaproxy.service \
	>"$work/verify.out" 2>&1; then
	if [ -s "$work/verify.out" ]; then
		cat "$work/verify.out"
		fail "systemd-analyze verify accepts the unit but has something to say"
	fi
else
	cat "$work/verify.out"
	fail "systemd-analyze verify rejects the installed unit"
fi

# --- upgrade keeps a local change to the configuration -------------------------
ini=$root/etc/kaproxy/kaproxy.ini
marker="# local change, must survive the upgrade"
echo "$marker" >>"$ini"
sed -i 's/^log_level = info$/log_level = debug/' "$ini"
grep -qx 'log_level = debug' "$ini" || fail "the test could not change log_level in kaproxy.ini"
cp "$ini" "$work/ini.local"
if dpkg_in_root --install "$deb2"; then
	cat "$work/dpkg.out"
	[ "$(installed_version)" = "$version+upgradetest" ] ||
		fail "version after upgrade is $(installed_version)"
	cmp -s "$work/ini.local" "$ini" || fail "the upgrade changed the locally modified kaproxy.ini"
	! grep -q "Configuration file" "$work/dpkg.out" || fail "dpkg asked about a conffile"
	leftovers=$(find "$root/etc" -name '*.dpkg-*')
	[ -z "$leftovers" ] || fail "the upgrade left $leftovers"
else
	cat "$work/dpkg.out"
	fail "dpkg --install $version+upgradetest over a locally changed kaproxy.ini"
fi

# --- removal keeps the conffiles, purge removes them ----------------------------
dpkg_in_root --remove kaproxy || { cat "$work/dpkg.out"; fail "dpkg --remove"; }
[ "$(status_of)" = rc ] || fail "status after remove is '$(status_of)', expected rc"
for f in usr/sbin/kaproxy lib/systemd/system/kaproxy.service usr/share/man/man8/kaproxy.8.gz \
	usr/share/man/man5/kaproxy.ini.5.gz; do
	[ ! -e "$root/$f" ] || fail "/$f is still there after dpkg --remove"
done
cmp -s "$work/ini.local" "$ini" || fail "dpkg --remove did not keep the changed kaproxy.ini"
[ -f "$root/etc/logrotate.d/kaproxy" ] || fail "dpkg --remove did not keep /etc/logrotate.d/kaproxy"

dpkg_in_root --purge kaproxy || { cat "$work/dpkg.out"; fail "dpkg --purge"; }
[ -z "$(status_of)" ] || fail "status after purge is '$(status_of)', expected none"
left=$(cd "$root" && find . -path ./var/lib/dpkg -prune -o -path ./usr/lib/systemd -prune -o \
	! -type d -print)
[ -z "$left" ] || fail "files left after dpkg --purge: $left"
[ ! -e "$root/etc/kaproxy" ] || fail "/etc/kaproxy is still there after dpkg --purge"

if [ "$failures" != 0 ]; then
	echo "deb-install: $failures failure(s)"
	exit 1
fi
echo "deb-install: $(basename "$deb1") installs, checks, verifies, upgrades keeping the local" \
	"configuration, removes and purges"
