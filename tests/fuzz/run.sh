#!/usr/bin/env bash
# Run every fuzz target of a KAPROXY_FUZZ build for SECONDS each, or only
# the NAMEs given, starting from a scratch copy of its corpus in
# tests/fuzz/corpus/<name>/ (the committed corpus is never written to) and
# with tests/fuzz/<name>.dict as its dictionary when there is one.
# Prints each target's exec count; exits non-zero when no target was found,
# one did not run, or one found a crash, a leak or a timeout.  The input
# that failed is kept in the scratch directory, whose path is printed.
#
#   tests/fuzz/run.sh BUILD_DIR SECONDS [NAME...]
#   tests/fuzz/run.sh build-fuzz 60                 # CI: every target, 1 minute each
#   tests/fuzz/run.sh build-fuzz 3600 config        # by hand: one target for an hour
set -euo pipefail

usage() { echo "usage: $0 BUILD_DIR SECONDS [NAME...]" >&2; exit 2; }
[ $# -ge 2 ] || usage
build=$1 seconds=$2
shift 2
[[ $seconds =~ ^[1-9][0-9]*$ ]] || usage
here=$(cd "$(dirname "$0")" && pwd)

if [ $# -gt 0 ]; then
	names=("$@")
else
	names=()
	for source in "$here"/fuzz_*.c; do
		[ -e "$source" ] || break
		name=${source##*/fuzz_}
		names+=("${name%.c}")
	done
fi
[ ${#names[@]} -gt 0 ] || { echo "fuzz: no targets in $here" >&2; exit 1; }

scratch=$(mktemp -d /tmp/kaproxy-fuzz.XXXXXX)
failed=()
for name in "${names[@]}"; do
	binary=$build/tests/fuzz_$name
	corpus=$here/corpus/$name
	work=$scratch/$name
	if [ ! -x "$binary" ]; then
		echo "fuzz: $name: $binary is not built (cmake -DKAPROXY_FUZZ=ON, target fuzz)" >&2
		failed+=("$name")
		continue
	fi
	if [ ! -d "$corpus" ] || [ -z "$(ls -A "$corpus")" ]; then
		echo "fuzz: $name: no seed corpus in $corpus" >&2
		failed+=("$name")
		continue
	fi
	dict=()
	[ -f "$here/$name.dict" ] && dict=(-dict="$here/$name.dict")
	mkdir -p "$work/corpus" "$work/artifacts"
	cp -a "$corpus/." "$work/corpus/"
	# -timeout: one input taking a second is a hang for a parser of one line.
	# rss_limit and malloc_limit: a leak or a runaway allocation fails too.
	status=0
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		"$binary" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 \
		-malloc_limit_mb=512 -max_len=4096 -print_final_stats=1 \
		"${dict[@]}" -artifact_prefix="$work/artifacts/" "$work/corpus" >"$work/log" 2>&1 || status=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\)$/\1/p' "$work/log" | tail -n1)
	if [ "$status" -ne 0 ] || [ -z "$runs" ] || [ -n "$(ls -A "$work/artifacts")" ]; then
		tail -n 60 "$work/log" >&2
		echo "fuzz: $name: FAILED (exit $status); log and input in $work" >&2
		failed+=("$name")
		continue
	fi
	echo "fuzz: $name: $runs inputs in ${seconds} s, no crash, leak or timeout" \
		"($(ls "$work/corpus" | wc -l) in corpus)"
done

if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: failed: ${failed[*]}" >&2
	exit 1
fi
rm -rf "$scratch"
