#!/usr/bin/env python3
"""The table of measured detection times: every check_within() of the scenarios that ran before this one (ctest runs the netns scenarios serially in name order, so 99 comes last), one row per measurement: scenario, leg, situation, configured bound, slack, measured.

Reads the per-scenario files lab.py writes to lab.measure_dir() (the build
directory's netns-measure/, or $KAPROXY_MEASURE_DIR); each scenario replaces
its own file when it runs, so the table shows the latest run of each.  A
scenario that failed its bound has already failed on its own: this one only
fails when there is nothing to show (no scenario ran), and skips (77) where
the scenarios themselves skip (not root).
"""
import argparse
import glob
import os
import sys
import time

import lab

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kaproxy", help="the kaproxy binary the scenarios ran (finds the build dir)")
    ap.add_argument("--markdown", action="store_true", help="only the table, as Markdown")
    args = ap.parse_args()
    name = os.path.basename(sys.argv[0])
    d = lab.measure_dir(args.kaproxy)
    scenarios = {os.path.splitext(os.path.basename(p))[0]
                 for p in glob.glob(os.path.join(HERE, "[0-9][0-9]-*.py"))}
    files = sorted(p for p in glob.glob(os.path.join(d, "*.tsv"))
                   if os.path.splitext(os.path.basename(p))[0] in scenarios)
    if not files:
        if os.geteuid() != 0:
            print("SKIP %s: not root, so no scenario ran (nothing in %s)" % (name, d))
            sys.exit(lab.SKIP)
        print("FAIL %s: no measurements in %s: no scenario ran" % (name, d))
        sys.exit(1)
    rows = []
    for p in files:
        with open(p) as f:
            for line in f:
                col = line.rstrip("\n").split("\t")
                if len(col) != 8:
                    continue
                scen, leg, sit, bound, slack, measured, verdict, what = col
                rows.append((scen, leg, sit if sit != "-" else "", bound, slack, measured,
                             verdict, what))
    mtimes = [os.path.getmtime(p) for p in files]
    head = ("scenario", "leg", "situation", "bound s", "+slack", "measured s", "", "what was timed")
    if not args.markdown:
        print("==== %s: measured detection times (%d rows from %d scenarios in %s, written %s .. %s)"
              % (name, len(rows), len(files), d,
                 time.strftime("%H:%M:%S", time.localtime(min(mtimes))),
                 time.strftime("%H:%M:%S", time.localtime(max(mtimes)))))
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---", "---", "---", "---:", "---:", "---:", "---", "---"]) + "|")
    for r in rows:
        print("| " + " | ".join(r[:6] + ("" if r[6] == "ok" else "**%s**" % r[6], r[7])) + " |")
    if not args.markdown:
        print("(bound and slack as configured in the scenario)")
        bad = [r for r in rows if r[6] != "ok"]
        if bad:
            print("note: %d row(s) outside their bound; those scenarios failed on their own" % len(bad))
        print("PASS %s" % name, flush=True)


if __name__ == "__main__":
    main()
