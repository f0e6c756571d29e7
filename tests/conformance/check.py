"""Checks a conformance run: every failed test must be listed in pending.txt.

Reads the suite's own report (one JSON line per collected test and per test
phase, as run-client-tests.sh records it), decides each test's outcome the
way its summary does, and exits 1 naming every failure that is not pending.
Tests listed as pending that now pass are named too, so the list shrinks as
the work lands.
"""

import json
import sys


def outcomes(report_path):
    status = {}
    for line in open(report_path):
        record = json.loads(line)
        if "collected" in record:
            status.setdefault(record["collected"], None)
            continue
        node, outcome = record["nodeid"], record["outcome"]
        current = status.get(node)
        if outcome == "failed":
            status[node] = "failed"
        elif outcome == "skipped":
            if current != "failed":
                status[node] = "skipped"
        elif record["when"] == "call" and current is None:
            status[node] = "passed"
    return {node: state or "failed" for node, state in status.items()}


def pending(list_path):
    names = set()
    for line in open(list_path):
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(line)
    return names


def main():
    if len(sys.argv) != 3 or not sys.argv[1]:
        print("conformance: the suite wrote no report")
        return 1
    results = outcomes(sys.argv[1])
    waiting = pending(sys.argv[2])
    failed = sorted(node for node, state in results.items() if state == "failed")
    unexpected = [node for node in failed if node not in waiting]
    now_passing = sorted(node for node in waiting if results.get(node) == "passed")
    counts = {state: sum(1 for s in results.values() if s == state) for state in ("passed", "failed", "skipped")}
    print("conformance: %(passed)d passed, %(failed)d failed, %(skipped)d skipped" % counts,
          "(%d failures pending on open issues)" % (len(failed) - len(unexpected)))
    for node in now_passing:
        print("conformance: now passing, take it off pending.txt:", node)
    for node in unexpected:
        print("conformance: UNEXPECTED FAILURE:", node)
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
