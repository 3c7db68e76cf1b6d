#!/usr/bin/env python3
"""Joins split GPU benchmark runs (spmm-<name>.json / sddmm-<name>.json, written by
bench/spmm_gpu and bench/sddmm_gpu with --only) into one results file per op, recomputes the
top-level summary over all cases, and draws the speedup plot.

  scripts/merge_bench.py --op spmm --out bench/results/H200/spmm.json RUN.json...
  scripts/merge_bench.py --plot bench/results/H200/speedup.svg bench/results/H200/{spmm,sddmm}.json
  scripts/merge_bench.py --markdown bench/results/H200/spmm.json     (table for RESULTS.md)

A case is (matrix, F, dtype); when two runs hold the same case the later run (by its summary
date) wins. Every case keeps the commit and date of the run that measured it; the summary's
`commit` lists them all when they differ. Only the standard library is used.
"""
import argparse
import json
import math
import os
import sys

# The harness's suite order (bench/gpu_harness.h); other names sort after these.
SUITE = ["bcsstk33", "fidapex6", "luxembourg", "ca-GrQc", "cora", "arxiv-like", "arxiv-like-local",
         "reddit-like", "reddit-like-local", "products-like", "products-like-local",
         "rmat-s16", "rmat-s16-local"]
PLANNED_F = [32, 64, 128, 256]


def geomean_and_min(values):
    if not values:
        return 0.0, 0.0
    return math.exp(sum(math.log(v) for v in values) / len(values)), min(values)


def case_key(case):
    name = case["matrix"]
    rank = SUITE.index(name) if name in SUITE else len(SUITE)
    return (rank, name, case["F"], case.get("dtype", "f32"))


def merge(op, paths):
    runs = []
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        if "summary" not in doc or "cases" not in doc:
            sys.exit(f"merge_bench: {path}: not a benchmark results file (no summary or cases)")
        runs.append((doc["summary"].get("date", ""), path, doc))
    runs.sort(key=lambda r: r[0])
    devices = {doc["summary"]["device"] for _, _, doc in runs}
    if len(devices) != 1:
        sys.exit(f"merge_bench: the runs come from different devices: {sorted(devices)}")
    cases = {}
    for date, path, doc in runs:
        for case in doc["cases"]:
            case = dict(case)
            case.setdefault("commit", doc["summary"]["commit"])
            case.setdefault("date", date)
            cases[case_key(case)] = case
    ordered = [cases[k] for k in sorted(cases)]
    speedups = [c["speedup_default_vs_cusparse"] for c in ordered]
    best = [c["speedup_best_vs_cusparse"] for c in ordered]
    commits = []
    for c in ordered:
        if c["commit"] not in commits:
            commits.append(c["commit"])
    geomean, lowest = geomean_and_min(speedups)
    best_geomean, best_lowest = geomean_and_min(best)
    worst = min(ordered, key=lambda c: c["speedup_default_vs_cusparse"]) if ordered else None
    first = runs[0][2]["summary"]
    summary = {
        "device": first["device"],
        "commit": ",".join(commits),
        "date": runs[-1][0],
        "geomean_speedup_vs_cusparse": geomean,
        "min_speedup_vs_cusparse": lowest,
        "cases": len(ordered),
        "worst_case": f'{worst["matrix"]} F={worst["F"]}' if worst else None,
        "geomean_best_schedule_speedup_vs_cusparse": best_geomean,
        "min_best_schedule_speedup_vs_cusparse": best_lowest,
    }
    if op == "spmm":
        bf16 = [c["bf16"]["speedup_default_vs_our_f32_default"] for c in ordered if "bf16" in c]
        big = [c["bf16"]["speedup_default_vs_our_f32_default"] for c in ordered
               if "bf16" in c and c["nnz"] >= 10_000_000]
        summary["geomean_bf16_speedup_vs_our_f32"], summary["min_bf16_speedup_vs_our_f32"] = geomean_and_min(bf16)
        summary["bf16_cases"] = len(bf16)
        (summary["geomean_bf16_speedup_vs_our_f32_large_graphs"],
         summary["min_bf16_speedup_vs_our_f32_large_graphs"]) = geomean_and_min(big)
    else:
        per_call = [c["speedup_default_vs_cusparse_without_preprocessing"] for c in ordered]
        bf16 = [c["bf16"] for c in ordered if "bf16" in c]
        if bf16:
            (summary["geomean_bf16_speedup_vs_our_f32"],
             summary["min_bf16_speedup_vs_our_f32"]) = geomean_and_min([b["speedup_default_vs_our_f32_default"] for b in bf16])
            (summary["geomean_bf16_speedup_vs_cusparse_f32"],
             summary["min_bf16_speedup_vs_cusparse_f32"]) = geomean_and_min([b["speedup_default_vs_cusparse_f32"] for b in bf16])
            summary["bf16_cases"] = len(bf16)
        (summary["geomean_speedup_vs_cusparse_without_preprocessing"],
         summary["min_speedup_vs_cusparse_without_preprocessing"]) = geomean_and_min(per_call)
    # What the planned grid (every matrix run, F = 32..256) lacks: runs cut short by a time limit.
    matrices = sorted({c["matrix"] for c in ordered}, key=lambda n: case_key({"matrix": n, "F": 0}))
    have = {(c["matrix"], c["F"]) for c in ordered}
    summary["missing"] = [f"{m} F={f}" for m in matrices for f in PLANNED_F if (m, f) not in have]
    summary["complete"] = not summary["missing"]
    summary["timing"] = first.get("timing", "")
    summary["copy_gbps"] = first.get("copy_gbps")
    summary["merged_from"] = [f'{os.path.basename(p)} ({doc["summary"]["commit"]}, {date})' for date, p, doc in runs]
    return {"summary": summary, "cases": ordered}


def markdown(doc, op):
    lines = []
    if op == "spmm":
        lines.append("| matrix | nnz | F | default schedule | ms | best swept | ms | cuSPARSE | ms | default/cuSPARSE | best/cuSPARSE | of no-reuse floor | bf16/f32 |")
        lines.append("|---|---:|---:|---|---:|---|---:|---|---:|---:|---:|---:|---:|")
        for c in doc["cases"]:
            bf = f'{c["bf16"]["speedup_default_vs_our_f32_default"]:.2f}x' if "bf16" in c else "-"
            lines.append(f'| {c["matrix"]} | {c["nnz"]:,} | {c["F"]} | `{c["default_schedule"]}` | {c["default_ms"]:.3f} '
                         f'| `{c["best_schedule"]}` | {c["best_ms"]:.3f} | {c["cusparse_best"]} | {c["cusparse_ms"]:.3f} '
                         f'| **{c["speedup_default_vs_cusparse"]:.2f}x** | {c["speedup_best_vs_cusparse"]:.2f}x '
                         f'| {100 * c["default_fraction_of_no_reuse_floor"]:.0f}% | {bf} |')
    else:
        lines.append("| matrix | nnz | F | default schedule | ms | best swept | ms | cuSPARSE ms | default/cuSPARSE | best/cuSPARSE | of no-reuse floor | bf16 ms | bf16/f32 | bf16/cuSPARSE f32 |")
        lines.append("|---|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for c in doc["cases"]:
            b = c.get("bf16")
            bf = (f'{b["default_ms"]:.3f} | {b["speedup_default_vs_our_f32_default"]:.2f}x | {b["speedup_default_vs_cusparse_f32"]:.2f}x'
                  if b else "- | - | -")
            lines.append(f'| {c["matrix"]} | {c["nnz"]:,} | {c["F"]} | `{c["default_schedule"]}` | {c["default_ms"]:.3f} '
                         f'| `{c["best_schedule"]}` | {c["best_ms"]:.3f} | {c["cusparse_ms"]:.3f} '
                         f'| **{c["speedup_default_vs_cusparse"]:.2f}x** | {c["speedup_best_vs_cusparse"]:.2f}x '
                         f'| {100 * c["default_fraction_of_no_reuse_floor"]:.0f}% | {bf} |')
    return "\n".join(lines)


COLORS = {32: "#4c78a8", 64: "#72b7b2", 128: "#f58518", 256: "#e45756", 512: "#54a24b"}


def plot(docs, path):
    """One panel per op: a bar per case (log scale), default schedule over cuSPARSE's best,
    grouped by matrix and coloured by F, with lines at 1x and at the target."""
    targets = {"spmm": 1.3, "sddmm": 8.0}
    width, panel_h, left, top = 1200, 330, 60, 40
    lo, hi = 0.25, 16.0
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{top + len(docs) * (panel_h + 90)}" '
           'font-family="sans-serif" font-size="11">']
    for p, (op, doc) in enumerate(docs):
        y0 = top + p * (panel_h + 90)
        ys = lambda v: y0 + panel_h - (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo)) * panel_h
        s = doc["summary"]
        svg.append(f'<text x="{left}" y="{y0 - 12}" font-size="14">{op.upper()} on {s["device"]}: default schedule '
                   f'vs cuSPARSE best (geomean {s["geomean_speedup_vs_cusparse"]:.2f}x, min '
                   f'{s["min_speedup_vs_cusparse"]:.2f}x, {s["cases"]} cases, f32)</text>')
        for v in (0.25, 0.5, 1, 2, 4, 8, 16):
            svg.append(f'<line x1="{left}" x2="{width - 10}" y1="{ys(v):.1f}" y2="{ys(v):.1f}" stroke="#ddd"/>')
            svg.append(f'<text x="{left - 6}" y="{ys(v) + 4:.1f}" text-anchor="end">{v:g}x</text>')
        cases = doc["cases"]
        slot = (width - left - 20) / max(1, len(cases) + len({c["matrix"] for c in cases}))
        x, previous = left + 4, None
        for c in cases:
            if c["matrix"] != previous:
                if previous is not None:
                    x += slot
                svg.append(f'<text x="{x:.1f}" y="{y0 + panel_h + 14}" transform="rotate(30 {x:.1f} {y0 + panel_h + 14})">'
                           f'{c["matrix"]}</text>')
                previous = c["matrix"]
            v = min(max(c["speedup_default_vs_cusparse"], lo), hi)
            y_bar, y_one = ys(v), ys(1.0)
            svg.append(f'<rect x="{x:.1f}" y="{min(y_bar, y_one):.1f}" width="{slot * 0.85:.1f}" '
                       f'height="{abs(y_one - y_bar):.1f}" fill="{COLORS.get(c["F"], "#888")}">'
                       f'<title>{c["matrix"]} F={c["F"]}: {c["speedup_default_vs_cusparse"]:.2f}x</title></rect>')
            x += slot
        svg.append(f'<line x1="{left}" x2="{width - 10}" y1="{ys(1):.1f}" y2="{ys(1):.1f}" stroke="#000"/>')
        t = targets[op]
        svg.append(f'<line x1="{left}" x2="{width - 10}" y1="{ys(t):.1f}" y2="{ys(t):.1f}" stroke="#c00" '
                   f'stroke-dasharray="5,4"/><text x="{width - 12}" y="{ys(t) - 4:.1f}" text-anchor="end" '
                   f'fill="#c00">target {t:g}x</text>')
        for i, (f, color) in enumerate(COLORS.items()):
            svg.append(f'<rect x="{left + 10 + i * 70}" y="{y0 + 4}" width="10" height="10" fill="{color}"/>'
                       f'<text x="{left + 24 + i * 70}" y="{y0 + 13}">F={f}</text>')
    svg.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(svg) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--op", choices=["spmm", "sddmm"])
    ap.add_argument("--out", help="merged results file to write")
    ap.add_argument("--plot", help="SVG to draw from merged spmm.json / sddmm.json files")
    ap.add_argument("--markdown", action="store_true", help="print the table of one merged file")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    if args.plot:
        docs = []
        for path in args.files:
            with open(path) as f:
                doc = json.load(f)
            docs.append(("sddmm" if "without_preprocessing" in json.dumps(doc["summary"]) else "spmm", doc))
        plot(docs, args.plot)
    elif args.markdown:
        with open(args.files[0]) as f:
            doc = json.load(f)
        op = "sddmm" if "geomean_speedup_vs_cusparse_without_preprocessing" in doc["summary"] else "spmm"
        print(markdown(doc, op))
    else:
        if not args.op or not args.out:
            ap.error("merging needs --op and --out")
        doc = merge(args.op, args.files)
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        s = doc["summary"]
        print(f'{args.op}: {s["cases"]} cases, geomean {s["geomean_speedup_vs_cusparse"]:.3f}x, '
              f'min {s["min_speedup_vs_cusparse"]:.3f}x ({s["worst_case"]}), missing {s["missing"]}')


if __name__ == "__main__":
    main()
