#!/usr/bin/env python3
"""Joins two bench/spmm_gpu runs of the same cases (before and after a change, both binaries run in
one device session) into one JSON with per-case times and ratios and a top-level summary.

  scripts/compare_spmm_runs.py --before DIR --after DIR --out FILE --before-commit C --after-commit C
                               [--what TEXT]

DIR holds the runs' JSON files (spmm*.json, searched recursively); cases are matched by (matrix, F).
"""
import argparse
import glob
import json
import math
import os
import sys


def load(folder):
    cases, summary = {}, None
    for path in sorted(glob.glob(os.path.join(folder, "**", "spmm*.json"), recursive=True)):
        doc = json.load(open(path))
        summary = doc["summary"]
        for c in doc["cases"]:
            cases[(c["matrix"], c["F"])] = c
    return cases, summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--before-commit", required=True)
    ap.add_argument("--after-commit", required=True)
    ap.add_argument("--what", default="")
    a = ap.parse_args()
    before, _ = load(a.before)
    after, summary = load(a.after)
    keys = sorted(set(before) & set(after))
    if not keys:
        sys.exit("compare_spmm_runs: no case is in both runs")
    cases, ratios = [], []
    for key in keys:
        b, n = before[key], after[key]
        c = {"matrix": key[0], "F": key[1], "nnz": b["nnz"], "default_schedule": n["default_schedule"],
             "before_ms": b["default_ms"], "after_ms": n["default_ms"],
             "speedup": b["default_ms"] / n["default_ms"],
             "best_before_ms": b["best_ms"], "best_after_ms": n["best_ms"],
             "cusparse_best": n["cusparse_best"], "cusparse_ms_before_run": b["cusparse_ms"],
             "cusparse_ms_after_run": n["cusparse_ms"],
             "default_vs_cusparse_before": b["cusparse_ms"] / b["default_ms"],
             "default_vs_cusparse_after": n["cusparse_ms"] / n["default_ms"],
             "sweep_ms_before": b["sweep_ms"], "sweep_ms_after": n["sweep_ms"]}
        if "bf16" in b and "bf16" in n:
            c["bf16_before_ms"] = b["bf16"]["default_ms"]
            c["bf16_after_ms"] = n["bf16"]["default_ms"]
        cases.append(c)
        ratios.append(c["speedup"])
    geomean = math.exp(sum(map(math.log, ratios)) / len(ratios))
    doc = {"summary": {"device": summary["device"], "commit_before": a.before_commit,
                       "commit_after": a.after_commit, "date": summary["date"], "what": a.what,
                       "geomean_speedup": geomean, "min_speedup": min(ratios),
                       "max_speedup": max(ratios), "cases": len(ratios), "timing": summary["timing"],
                       "copy_gbps": summary["copy_gbps"], "sweep": summary.get("sweep", "default")},
           "cases": cases}
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=2)
    print(f"{len(ratios)} cases: geometric mean {geomean:.3f}x, {min(ratios):.3f}-{max(ratios):.3f}x")


if __name__ == "__main__":
    main()
