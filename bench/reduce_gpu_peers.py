#!/usr/bin/env python3
"""GNN aggregation peers on the GPU: what a PyTorch / PyG user runs for out = reduce_e(w_e * x[col_e])
over each row of a sparse matrix (max, min, mean; sum for reference), the op that
`ops::spmm` with `SpmmOptions::reduce` runs (bench/RESULTS.md, "The GNN aggregations on the GPU").

Peers, each timed as one call from the messages' inputs to the output:
  * pyg_scatter:   PyG's MessagePassing path: msg = x.index_select(0, col) * w[:, None], then
                   torch_geometric.utils.scatter(msg, row, dim=0, dim_size=rows, reduce=...).
                   Skipped with a reason when torch_geometric is not installed.
  * torch_scatter_reduce: the same in plain PyTorch: msg as above, then
                   zeros(rows, F).scatter_reduce_(0, row, msg, 'amax'/'amin'/'mean', include_self=False).
  * torch_sparse_mm (sum only): torch.sparse.mm on a CSR tensor (cuSPARSE), for reference.
Each: warm-up, then the median of --repeat calls timed by CUDA events (no L2 flush, as the
CLI's timings), and the peak memory the call allocated beyond its inputs.

Input: Matrix Market files (as `tessera convert -g SPEC -o FILE` writes them: 1-based
"row col value" lines after the header), parsed in parallel with numpy. The dense operand is
torch.randn(cols, F) with a fixed seed.

    python3 bench/reduce_gpu_peers.py --mtx a.mtx --name arxiv-like --features 32,128 \
        --reduce max,mean,sum --out peers.json
"""
import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time

import numpy as np


def _parse_range(args):
    path, begin, end = args
    with open(path, "rb") as f:
        f.seek(begin)
        text = f.read(end - begin)
    return np.array(text.split(), dtype=np.float64)


def read_mtx(path, workers):
    """(rows, cols, row0 int64, col0 int64, values float32) of a coordinate real general file."""
    with open(path, "rb") as f:
        banner = f.readline()
        if not banner.startswith(b"%%MatrixMarket") or b"coordinate" not in banner:
            raise SystemExit(f"{path}: not a Matrix Market coordinate file")
        line = f.readline()
        while line.startswith(b"%"):
            line = f.readline()
        rows, cols, nnz = map(int, line.split())
        start = f.tell()
        size = os.fstat(f.fileno()).st_size
        # Chunk boundaries moved forward to the next line start.
        bounds = [start]
        for k in range(1, workers):
            f.seek(start + (size - start) * k // workers)
            f.readline()
            bounds.append(max(f.tell(), bounds[-1]))
        bounds.append(size)
    ranges = [(path, bounds[k], bounds[k + 1]) for k in range(workers) if bounds[k + 1] > bounds[k]]
    with multiprocessing.Pool(len(ranges)) as pool:
        parts = pool.map(_parse_range, ranges)
    flat = np.concatenate(parts) if parts else np.zeros(0)
    if flat.size != 3 * nnz:
        raise SystemExit(f"{path}: {flat.size // 3} entries, the header says {nnz}")
    triples = flat.reshape(nnz, 3)
    return (rows, cols, triples[:, 0].astype(np.int64) - 1, triples[:, 1].astype(np.int64) - 1,
            triples[:, 2].astype(np.float32))


def timed(torch, fn, repeat):
    """(median ms, peak MiB allocated during one call beyond what was allocated before it)."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    return statistics.median(times), peak


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mtx", action="append", required=True, help="Matrix Market file (repeatable)")
    parser.add_argument("--name", action="append", help="a name for each --mtx, in order")
    parser.add_argument("--features", default="32", help="comma-separated F")
    parser.add_argument("--reduce", default="max,mean,sum", help="comma-separated: max,min,mean,sum")
    parser.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    names = args.name or []
    if len(names) not in (0, len(args.mtx)):
        raise SystemExit("--name: one for each --mtx, or none")

    import torch
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    try:
        import torch_geometric
        from torch_geometric.utils import scatter as pyg_scatter
        pyg = torch_geometric.__version__
    except ImportError as e:
        pyg_scatter, pyg = None, f"not installed ({e})"
    dtype = torch.float32 if args.dtype == "f32" else torch.bfloat16
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "torch_geometric": pyg,
               "dtype": args.dtype, "repeat": args.repeat, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "cases": []}
    for index, path in enumerate(args.mtx):
        name = names[index] if names else os.path.basename(path)
        t0 = time.time()
        rows, cols, row, col, val = read_mtx(path, args.workers)
        print(f"{name}: {rows}x{cols}, {len(row)} nonzeros, read in {time.time() - t0:.1f} s", flush=True)
        row_d = torch.from_numpy(row).cuda()
        col_d = torch.from_numpy(col).cuda()
        w = torch.from_numpy(val).cuda().to(dtype)
        adj = torch.sparse_coo_tensor(torch.stack([row_d, col_d]), w, (rows, cols)).coalesce().to_sparse_csr()
        for F in (int(f) for f in args.features.split(",")):
            gen = torch.Generator(device="cuda").manual_seed(F)
            x = torch.randn(cols, F, generator=gen, device="cuda").to(dtype)
            index2d = row_d.view(-1, 1).expand(-1, F)
            for reduce in args.reduce.split(","):
                case = {"matrix": name, "rows": rows, "cols": cols, "nnz": len(row), "F": F, "reduce": reduce,
                        "peers": {}}

                def messages():
                    return x.index_select(0, col_d) * w.view(-1, 1)

                peers = {}
                if reduce == "sum":
                    peers["torch_sparse_mm"] = lambda: torch.sparse.mm(adj, x)
                if pyg_scatter is not None:
                    peers["pyg_scatter"] = lambda: pyg_scatter(messages(), row_d, dim=0, dim_size=rows, reduce=reduce)
                torch_reduce = {"max": "amax", "min": "amin", "mean": "mean", "sum": "sum"}[reduce]
                peers["torch_scatter_reduce"] = lambda: torch.zeros(rows, F, device="cuda", dtype=dtype).scatter_reduce_(
                    0, index2d, messages(), reduce=torch_reduce, include_self=False)
                for peer, fn in peers.items():
                    try:
                        ms, peak = timed(torch, fn, args.repeat)
                        case["peers"][peer] = {"ms": round(ms, 4), "peak_mib": round(peak, 1)}
                        print(f"  F={F} {reduce} {peer}: {ms:.3f} ms, peak {peak:.0f} MiB", flush=True)
                    except Exception as e:  # out of memory, an unsupported reduce: recorded, not fatal
                        case["peers"][peer] = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
                        print(f"  F={F} {reduce} {peer}: {type(e).__name__}", flush=True)
                    torch.cuda.empty_cache()
                results["cases"].append(case)
        del row_d, col_d, w, adj
        torch.cuda.empty_cache()
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
