#!/usr/bin/env python3
"""Joins the GPU k-means runs of one device session into bench/results/<device>/kmeans.json.

    scripts/merge_kmeans.py --ours kmeans_ours.json --peers peers.json --out kmeans.json [--markdown]

ours:  bench/kmeans_gpu (Tessera); peers: bench/kmeans_gpu_peers.py (flash-kmeans 0.3.1, PyTorch).
Per case the headline time is the Lloyd iteration (`step`: seconds per iteration, assign +
update) for the plain cases, and the whole warm-started call of 2 iterations (`run`) for the
SVG2-like cases, where a diffusion step pays for the call. Speedup = peer time / Tessera time.
The summary carries device, commit, date, min/geomean vs flash-kmeans, geomean vs torch, cases.
"""
import argparse
import json
import math
import sys


def geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def peer_time(peer, kind):
    if not peer or peer.get("status") != "ok":
        return None
    return peer["run"]["median_s"] if kind == "run" else peer["sec_per_iter"]


def merge(ours, peers):
    by_name = {c["name"]: c for c in peers.get("cases", [])}
    cases = []
    for o in ours["cases"]:
        if o.get("status") == "error":
            cases.append({"name": o["name"], "status": "error", "error": o.get("error")})
            continue
        p = by_name.get(o["name"], {}).get("peers", {})
        kind = "run" if o.get("warm_start") else "step"
        mine = o["run_s"] if kind == "run" else o["step_s"]
        c = {
            "name": o["name"], "shape": o["shape"], "dtype": o["dtype"], "headline": kind,
            "tessera_s": mine, "tessera_step_s": o["step_s"], "tessera_run_s": o["run_s"],
            "iters_per_run": o["iters_per_run"],
            "assign_s": o["assign_s"], "update_s": o["update_s"],
            "assign_tflops": o["assign_tflops"],
            "assign_fraction_of_tensor_core_peak": o["assign_fraction_of_tensor_core_peak"],
            "update_gbps": o["update_gbps"],
            "update_fraction_of_copy_bandwidth": o["update_fraction_of_copy_bandwidth"],
            "inertia_per_point": o["inertia_per_point"],
        }
        for name, key in (("flash_kmeans", "flash"), ("torch_lloyd", "torch")):
            t = peer_time(p.get(name), kind)
            c[key + "_s"] = t
            c[key + "_step_s"] = peer_time(p.get(name), "step")
            c[key + "_run_s"] = peer_time(p.get(name), "run")
            c["speedup_vs_" + key] = t / mine if t else None
            c["run_speedup_vs_" + key] = (c[key + "_run_s"] / o["run_s"]) if c[key + "_run_s"] else None
            if p.get(name, {}).get("status") == "ok":
                c[key + "_inertia_per_point"] = p[name]["check"]["inertia_per_point"]
        cases.append(c)
    ok = [c for c in cases if c.get("speedup_vs_flash")]
    vs_flash = [c["speedup_vs_flash"] for c in ok]
    vs_torch = [c["speedup_vs_torch"] for c in cases if c.get("speedup_vs_torch")]
    summary = {
        "device": ours["summary"]["device"],
        "commit": ours["summary"]["commit"],
        "date": ours["summary"]["date"],
        "min_speedup_vs_flash_kmeans": min(vs_flash) if vs_flash else None,
        "geomean_speedup_vs_flash_kmeans": geomean(vs_flash),
        "geomean_speedup_vs_torch": geomean(vs_torch),
        "cases": len(cases),
        "flash_kmeans_version": peers.get("summary", {}).get("flash_kmeans"),
        "torch_version": peers.get("summary", {}).get("torch"),
        "peers_date": peers.get("summary", {}).get("date"),
        "copy_gbps": ours["summary"].get("copy_gbps"),
        "headline": "per Lloyd iteration (step) for plain cases; whole warm-started 2-iteration "
                    "call (run) for svg2 cases; speedup = peer time / Tessera time",
    }
    return {"summary": summary, "cases": cases}


def markdown(doc):
    rows = ["| case | dtype | Tessera ms | flash-kmeans ms | torch ms | vs flash | vs torch | "
            "assign TFLOP/s (% peak) | update GB/s (% copy) | run(n) Tessera / flash ms |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for c in doc["cases"]:
        if c.get("status") == "error":
            rows.append("| %s | error: %s |" % (c["name"], c.get("error")))
            continue
        f = lambda v: "%.3f" % (v * 1e3) if v else "-"
        r = lambda v: "%.2fx" % v if v else "-"
        rows.append("| %s%s | %s | %s | %s | %s | %s | %s | %.0f (%.0f%%) | %.0f (%.0f%%) | %s / %s |" % (
            c["name"], " (run)" if c["headline"] == "run" else "", c["dtype"], f(c["tessera_s"]),
            f(c["flash_s"]), f(c["torch_s"]), r(c["speedup_vs_flash"]), r(c["speedup_vs_torch"]),
            c["assign_tflops"], 100 * c["assign_fraction_of_tensor_core_peak"], c["update_gbps"],
            100 * c["update_fraction_of_copy_bandwidth"], f(c["tessera_run_s"]), f(c["flash_run_s"])))
    s = doc["summary"]
    rows.append("")
    rows.append("geomean vs flash-kmeans %.2fx (min %.2fx), geomean vs torch %.2fx; %s, commit %s" % (
        s["geomean_speedup_vs_flash_kmeans"] or 0, s["min_speedup_vs_flash_kmeans"] or 0,
        s["geomean_speedup_vs_torch"] or 0, s["device"], s["commit"]))
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ours", required=True)
    ap.add_argument("--peers", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--markdown", action="store_true", help="also print the table")
    args = ap.parse_args()
    with open(args.ours) as f:
        ours = json.load(f)
    with open(args.peers) as f:
        peers = json.load(f)
    doc = merge(ours, peers)
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    if args.markdown:
        print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
