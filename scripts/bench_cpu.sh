#!/usr/bin/env bash
# CPU SpMM benchmark, Tessera against Eigen on 2 threads.
#   scripts/bench_cpu.sh [extra Google Benchmark flags, e.g. --benchmark_filter=rmat16]
# Configures and builds build-bench (Release, CPU only), runs bench/spmm_cpu_vs_eigen with
# OMP_NUM_THREADS=2, writes bench/results/cpu/spmm_cpu.json (Google Benchmark's JSON) and
# bench/results/cpu/spmm_cpu_summary.json, and prints the markdown table for bench/RESULTS.md.
# Environment: JOBS (build jobs, default 2), TESSERA_DATA (data folder, default ../shared/data),
# BUILD_DIR (default build-bench).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build-bench}"
JOBS="${JOBS:-2}"
OUT_DIR="$ROOT/bench/results/cpu"
OUT_JSON="$OUT_DIR/spmm_cpu.json"
SUMMARY_JSON="$OUT_DIR/spmm_cpu_summary.json"

generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
cmake -S "$ROOT" -B "$BUILD_DIR" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DTESSERA_CUDA=OFF \
  -DTESSERA_BUILD_TESTS=OFF -DTESSERA_BUILD_EXAMPLES=OFF -DTESSERA_BUILD_BENCH=ON
cmake --build "$BUILD_DIR" --target spmm_cpu_vs_eigen -j"$JOBS"

mkdir -p "$OUT_DIR"
commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "no-commit")"
if [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null | head -1)" ]; then commit="$commit+dirty"; fi
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "load average before the run: $load_before (anything else running skews a 2-core timing)"

OMP_NUM_THREADS=2 TESSERA_BENCH_COMMIT="$commit" "$BUILD_DIR/bench/spmm_cpu_vs_eigen" \
  --benchmark_out="$OUT_JSON" --benchmark_out_format=json "$@"

ROOT="$ROOT" COMMIT="$commit" LOAD_BEFORE="$load_before" LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)" \
python3 - "$OUT_JSON" "$SUMMARY_JSON" <<'PY'
import json, math, os, sys, datetime

bench_path, summary_path = sys.argv[1], sys.argv[2]
with open(bench_path) as f:
    doc = json.load(f)

UNIT = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
TARGET = 1.5

def seconds(b):
    return b["real_time"] * UNIT[b.get("time_unit", "ns")]

# Median of the repetitions (the benchmark reports aggregates only); plain runs if no aggregates.
runs = {}
for b in doc["benchmarks"]:
    if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
        continue
    if b.get("error_occurred"):
        continue
    runs[b["run_name"].split("/min_time")[0].split("/real_time")[0]] = b

floors = {}
for key in ("copy_l3", "copy_dram", "fma_peak_avx2"):
    b = runs.get("floor/" + key)
    if b:
        floors[key] = b["GB/s"] if "GB/s" in b else b["GFLOP/s"]

l3_bytes = 0
for c in doc.get("context", {}).get("caches", []):
    if c.get("level") == 3:
        l3_bytes = max(l3_bytes, c.get("size", 0))

cases = {}   # (matrix, F) -> {case: run}
order = []
for name, b in runs.items():
    parts = name.split("/")
    if parts[0] != "spmm" or len(parts) < 4:
        continue
    key = (parts[1], int(parts[2].split(":")[1]))
    if key not in cases:
        cases[key] = {}
        order.append(key)
    cases[key][parts[3]] = b

def model_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown cpu"

rows_out = []
for key in order:
    c = cases[key]
    if "tessera" not in c or not ("eigen_rowmajor" in c or "eigen_colmajor" in c):
        continue
    t = seconds(c["tessera"])
    er = seconds(c["eigen_rowmajor"]) if "eigen_rowmajor" in c else math.inf
    ec = seconds(c["eigen_colmajor"]) if "eigen_colmajor" in c else math.inf
    best = min(er, ec)
    b = c["tessera"]
    floor_s = None
    bound = None
    if floors:
        in_l3 = l3_bytes and b["working_set_bytes"] <= l3_bytes
        bw = floors.get("copy_l3" if in_l3 else "copy_dram")
        mem_s = b["bytes_floor"] / (bw * 1e9) if bw else 0.0
        peak = floors.get("fma_peak_avx2")
        flop_s = b["flops"] / (peak * 1e9) if peak else 0.0
        floor_s = max(mem_s, flop_s)
        bound = ("L3 copy" if in_l3 else "DRAM copy") if mem_s >= flop_s else "FMA peak"
    row = {
        "matrix": key[0], "F": key[1], "rows": int(b["rows"]), "nnz": int(b["nnz"]),
        "tessera_ms": t * 1e3, "tessera_gflops": b["flops"] / t * 1e-9,
        "eigen_rowmajor_ms": er * 1e3 if er != math.inf else None,
        "eigen_colmajor_ms": ec * 1e3 if ec != math.inf else None,
        "eigen_best": "row-major" if er <= ec else "col-major",
        "speedup_vs_eigen": best / t,
        "meets_target": best / t >= TARGET,
        "validate_overhead": (seconds(c["tessera_validate"]) / t - 1.0) if "tessera_validate" in c else None,
        "floor_ms": floor_s * 1e3 if floor_s else None, "floor_bound": bound,
        "tessera_fraction_of_floor": floor_s / t if floor_s else None,
    }
    for variant in ("tessera_1thread", "eigen_rowmajor_1thread", "eigen_colmajor_1thread"):
        if variant in c:
            row[variant + "_ms"] = seconds(c[variant]) * 1e3
    rows_out.append(row)

if not rows_out:
    sys.exit("bench_cpu.sh: no complete (tessera, eigen) pairs in " + bench_path)

speedups = [r["speedup_vs_eigen"] for r in rows_out]
geomean = math.exp(sum(math.log(s) for s in speedups) / len(speedups))

def ms(v):
    return "—" if v is None else ("%.3f" % v if v < 10 else "%.1f" % v)

print()
print("| matrix | rows | nnz | F | Tessera ms | Tessera GFLOP/s | Eigen row-major ms | Eigen col-major ms "
      "| best Eigen / Tessera | ≥ 1.5x | validate=true overhead | floor ms (bound) | Tessera % of floor |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|:-:|---:|---:|---:|")
for r in rows_out:
    print("| %s | %d | %d | %d | %s | %.1f | %s | %s | **%.2fx** (%s) | %s | %s | %s | %s |" % (
        r["matrix"], r["rows"], r["nnz"], r["F"], ms(r["tessera_ms"]), r["tessera_gflops"],
        ms(r["eigen_rowmajor_ms"]), ms(r["eigen_colmajor_ms"]), r["speedup_vs_eigen"],
        r["eigen_best"], "yes" if r["meets_target"] else "no",
        "—" if r["validate_overhead"] is None else "%+.0f%%" % (100 * r["validate_overhead"]),
        "—" if r["floor_ms"] is None else "%s (%s)" % (ms(r["floor_ms"]), r["floor_bound"]),
        "—" if r["tessera_fraction_of_floor"] is None else "%.0f%%" % (100 * r["tessera_fraction_of_floor"])))
print()
print("Geometric mean of best Eigen / Tessera: **%.2fx** over %d cases; minimum %.2fx; "
      "%d of %d cases meet the 1.5x target." % (geomean, len(speedups), min(speedups),
                                                 sum(r["meets_target"] for r in rows_out), len(rows_out)))

one = [r for r in rows_out if "tessera_1thread_ms" in r]
if one:
    print()
    print("| matrix | F | Tessera 1 thr ms | 2 thr speedup | Eigen row-major 1 thr ms | 2 thr speedup "
          "| Eigen col-major 1 thr ms | 2 thr speedup |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in one:
        def sp(a, b):
            return "—" if a is None or b is None else "%.2fx" % (a / b)
        print("| %s | %d | %s | %s | %s | %s | %s | %s |" % (
            r["matrix"], r["F"], ms(r["tessera_1thread_ms"]), sp(r["tessera_1thread_ms"], r["tessera_ms"]),
            ms(r.get("eigen_rowmajor_1thread_ms")), sp(r.get("eigen_rowmajor_1thread_ms"), r["eigen_rowmajor_ms"]),
            ms(r.get("eigen_colmajor_1thread_ms")), sp(r.get("eigen_colmajor_1thread_ms"), r["eigen_colmajor_ms"])))

if floors:
    print()
    print("Floors (2 threads): copy bandwidth %.1f GB/s with an L3-resident 8 MiB buffer, %.1f GB/s with "
          "512 MiB; AVX2 FMA peak %.1f GFLOP/s; L3 %d MiB." % (
              floors.get("copy_l3", float("nan")), floors.get("copy_dram", float("nan")),
              floors.get("fma_peak_avx2", float("nan")), l3_bytes >> 20))

summary = {
    "summary": {
        "device": "cpu: %s x2 threads" % model_name(),
        "commit": os.environ.get("COMMIT", "unknown"),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "geomean_speedup_vs_eigen": geomean,
        "min_speedup_vs_eigen": min(speedups),
        "target_speedup": TARGET,
        "cases_meeting_target": sum(r["meets_target"] for r in rows_out),
        "load_average_before": os.environ.get("LOAD_BEFORE"),
        "load_average_after": os.environ.get("LOAD_AFTER"),
        "floors": {"copy_l3_GBps": floors.get("copy_l3"), "copy_dram_GBps": floors.get("copy_dram"),
                   "fma_peak_avx2_GFLOPps": floors.get("fma_peak_avx2"), "l3_bytes": l3_bytes},
        "benchmark_json": os.path.relpath(bench_path, os.environ.get("ROOT", ".")),
        "cases": rows_out,
    }
}
with open(summary_path, "w") as f:
    json.dump(summary, f, indent=2)
    f.write("\n")
print()
print("wrote %s" % summary_path)
PY
