#!/usr/bin/env python3
"""Batched k-means GPU peers: flash-kmeans (Triton) vs. a plain PyTorch Lloyd iteration.

Status (2026-12-01): written for issue 4; only the CPU smoke test has run. The flash-kmeans
path is untested until the next device session. The wheels (.wheels/, gitignored; carry it)
come from `pip download flash-kmeans==0.3.1 tqdm --no-deps -d .wheels`.

Standalone; needs only torch (+ triton and flash-kmeans for the flash peer).
On the GPU machine (no network), install the carried wheels first:

    pip install --no-index --find-links .wheels flash-kmeans
    python3 bench/kmeans_gpu_peers.py --out bench/results/kmeans_gpu_peers.json

CPU smoke test of the PyTorch peer (flash-kmeans is skipped with a reason):

    python3 bench/kmeans_gpu_peers.py --quick --device cpu --out /tmp/peers_smoke.json

Per case and peer it records:
  * step:  seconds per Lloyd iteration (assign + centroid update), median over
           >= 20 individually timed iterations after warm-up (CUDA events).
           For flash-kmeans this is the library's own per-iteration function
           (euclid_assign_triton + triton_centroid_update_sorted_euclid + shift),
           with ||x||^2 precomputed once, as batch_kmeans_Euclid does.
  * run:   the end-to-end call doing `iters` fixed iterations from the same
           initial centroids (flash: batch_kmeans_Euclid(..., tol=-1.0,
           init_centroids=c0), which includes its ||x||^2 pass and a host sync
           per iteration); seconds per call and per iteration (median of >= 20 calls).
  * check: inertia (fp32, sum over all points of min squared distance to the
           final centroids), inertia at the initial centroids, label/centroid
           checksums, empty-cluster count, label agreement between peers.
Both peers use identical data (torch.randn, fixed seed) and identical initial
centroids (K distinct random points of each batch), and never stop early.
"""
import argparse
import datetime
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback

import torch

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}

# name, B, N, K, D, dtype, iters per run (None -> --iters), kind
FULL_CASES = [
    ("b32_n131072_k1000_d128_fp16", 32, 131072, 1000, 128, "fp16", None, "lloyd"),
    ("b32_n16384_k100_d128_fp16", 32, 16384, 100, 128, "fp16", None, "lloyd"),
    ("b1_n1048576_k1024_d128_fp32", 1, 1048576, 1024, 128, "fp32", None, "lloyd"),
    ("b1_n1048576_k1024_d128_bf16", 1, 1048576, 1024, 128, "bf16", None, "lloyd"),
    ("b1_n1048576_k8192_d128_fp16", 1, 1048576, 8192, 128, "fp16", None, "lloyd"),
    ("b1_n8388608_k1024_d128_fp16", 1, 8388608, 1024, 128, "fp16", None, "lloyd"),
    ("svg2_b40_n75600_k300_d128_bf16", 40, 75600, 300, 128, "bf16", 2, "svg2_warm2"),
    ("svg2_b40_n75600_k1000_d128_bf16", 40, 75600, 1000, 128, "bf16", 2, "svg2_warm2"),
]

QUICK_CASES = [
    ("quick_b4_n4096_k64_d64_fp32", 4, 4096, 64, 64, "fp32", None, "lloyd"),
    ("quick_b1_n16384_k128_d128_fp16", 1, 16384, 128, 128, "fp16", None, "lloyd"),
    ("quick_b2_n8192_k100_d128_bf16", 2, 8192, 100, 128, "bf16", None, "lloyd"),
    ("quick_svg2_b4_n3000_k30_d128_bf16", 4, 3000, 30, 128, "bf16", 2, "svg2_warm2"),
]


def is_oom(e):
    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(torch.cuda, "OutOfMemoryError", None)) if t)
    if oom_types and isinstance(e, oom_types):
        return True
    msg = str(e).lower()
    return "out of memory" in msg or "outofresources" in msg.replace(" ", "")


def free_memory(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


class Timer:
    """Times a zero-arg callable once; CUDA events on GPU, perf_counter on CPU."""

    def __init__(self, device):
        self.device = device

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def time_calls(self, fn, warmup, repeats):
        for _ in range(warmup):
            fn()
        self.sync()
        times = []
        if self.device.type == "cuda":
            evs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                   for _ in range(repeats)]
            for s, e in evs:
                s.record()
                fn()
                e.record()
            self.sync()
            times = [s.elapsed_time(e) / 1e3 for s, e in evs]
        else:
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        return {
            "median_s": statistics.median(times),
            "mean_s": statistics.fmean(times),
            "min_s": min(times),
            "max_s": max(times),
            "n": len(times),
        }


# ----------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------
def make_data(B, N, K, D, dtype, device, seed):
    """x: [B, N, D] randn (generated in fp32 in row chunks, cast to dtype);
    c0: [B, K, D] = K distinct random points of each batch (same for all peers)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    x = torch.empty((B, N, D), dtype=dtype, device=device)
    rows = max(1, (1 << 24) // D)  # ~64 MiB fp32 temp per chunk
    for b in range(B):
        for n0 in range(0, N, rows):
            n1 = min(N, n0 + rows)
            x[b, n0:n1] = torch.randn((n1 - n0, D), generator=gen, device=device,
                                      dtype=torch.float32).to(dtype)
    cpu_gen = torch.Generator()
    cpu_gen.manual_seed(seed + 1)
    idx = torch.stack([torch.randperm(N, generator=cpu_gen)[:K] for _ in range(B)])  # [B, K]
    idx = idx.to(device)
    c0 = torch.gather(x, 1, idx[..., None].expand(B, K, D)).contiguous()
    return x, c0


# ----------------------------------------------------------------------------
# peer (b): plain PyTorch Lloyd, batched over B
# ----------------------------------------------------------------------------
class TorchLloyd:
    """assign: dist = ||c||^2 - 2 x c^T (baddbmm in the data dtype; ||x||^2 is
    constant per row so it does not change the argmin) or torch.cdist; argmin.
    update:  index_add_ of fp32 rows into [B*K, D] sums + bincount counts;
             empty clusters keep their previous centroid."""

    def __init__(self, x, K, dist="mm", max_dist_elems=1 << 32):
        self.x = x
        self.B, self.N, self.D = x.shape
        self.K = K
        self.dist = dist
        # chunk N only so that the [B, n, K] distance buffer stays bounded
        self.chunk = max(1, min(self.N, max_dist_elems // max(1, self.B * K)))
        self.n_chunks = math.ceil(self.N / self.chunk)
        self.offsets = (torch.arange(self.B, device=x.device, dtype=torch.int64) * K)[:, None]

    def assign(self, c):
        B, N, K = self.B, self.N, self.K
        if self.dist == "mm":
            c_sq = (c.float() ** 2).sum(-1).to(c.dtype).unsqueeze(1)  # [B, 1, K]
            cT = c.transpose(1, 2)
        labels = torch.empty((B, N), dtype=torch.int64, device=self.x.device)
        for n0 in range(0, N, self.chunk):
            xc = self.x[:, n0:n0 + self.chunk]
            if self.dist == "mm":
                d = torch.baddbmm(c_sq, xc, cT, beta=1.0, alpha=-2.0)  # [B, n, K]
            else:
                d = torch.cdist(xc, c)  # [B, n, K]
            labels[:, n0:n0 + self.chunk] = d.argmin(dim=-1)
            del d
        return labels

    def update(self, labels, c_old):
        B, N, K, D = self.B, self.N, self.K, self.D
        sums = torch.zeros((B * K, D), dtype=torch.float32, device=self.x.device)
        flat = labels + self.offsets  # [B, N]
        for n0 in range(0, N, self.chunk):
            xc = self.x[:, n0:n0 + self.chunk].reshape(-1, D).float()
            sums.index_add_(0, flat[:, n0:n0 + self.chunk].reshape(-1), xc)
            del xc
        counts = torch.bincount(flat.reshape(-1), minlength=B * K).view(B, K, 1)
        sums = sums.view(B, K, D)
        new = torch.where(counts > 0, sums / counts.clamp_min(1), c_old.float())
        return new.to(self.x.dtype)

    def step(self, c):
        labels = self.assign(c)
        return self.update(labels, c), labels

    def run(self, c0, iters):
        c = c0
        labels = None
        for _ in range(iters):
            c, labels = self.step(c)
        return labels, c


# ----------------------------------------------------------------------------
# peer (a): flash-kmeans
# ----------------------------------------------------------------------------
def load_flash():
    try:
        import flash_kmeans  # noqa: F401
        from flash_kmeans import batch_kmeans_Euclid, triton_centroid_update_sorted_euclid
        from flash_kmeans.assign_euclid_triton import euclid_assign_triton
        try:
            from flash_kmeans.kmeans_triton_impl import _euclid_iter
        except Exception:
            _euclid_iter = None
        ver = getattr(flash_kmeans, "__version__", None)
        if ver is None:
            from importlib.metadata import version
            ver = version("flash-kmeans")
        return {
            "version": ver,
            "batch_kmeans_Euclid": batch_kmeans_Euclid,
            "assign": euclid_assign_triton,
            "update": triton_centroid_update_sorted_euclid,
            "iter": _euclid_iter,
        }, None
    except Exception as e:
        return None, "import failed: %s: %s" % (type(e).__name__, e)


class FlashLloyd:
    def __init__(self, fk, x, K):
        self.fk = fk
        self.x = x
        self.K = K
        B, N, D = x.shape
        # exactly as batch_kmeans_Euclid: ||x||^2 in x.dtype, 1M-row chunks
        self.x_sq = torch.empty((B, N), device=x.device, dtype=x.dtype)
        for i in range(0, N, 1 << 20):
            self.x_sq[:, i:i + (1 << 20)] = (x[:, i:i + (1 << 20)] ** 2).sum(dim=-1)

    def step(self, c):
        if self.fk["iter"] is not None:
            c_new, _shift, ids = self.fk["iter"](self.x, self.x_sq, c, True)
        else:
            ids = self.fk["assign"](self.x, c, self.x_sq, use_heuristic=True)
            c_new = self.fk["update"](self.x, ids, c)
        return c_new, ids

    def run(self, c0, iters):
        ids, c, n_it = self.fk["batch_kmeans_Euclid"](
            self.x, self.K, max_iters=iters, tol=-1.0, init_centroids=c0.clone(), verbose=False)
        if n_it != iters:
            raise RuntimeError("flash-kmeans ran %d iterations, expected %d" % (n_it, iters))
        return ids, c


# ----------------------------------------------------------------------------
# checks (untimed, common to both peers)
# ----------------------------------------------------------------------------
@torch.no_grad()
def inertia_fp32(x, c, max_elems=1 << 28):
    """sum_{b,n} min_k ||x_bn - c_bk||^2 in fp32 (TF32 off), chunked over N."""
    B, N, D = x.shape
    K = c.shape[1]
    cf = c.float()
    c_sq = (cf ** 2).sum(-1).unsqueeze(1)
    chunk = max(1, min(N, max_elems // max(1, B * K)))
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    try:
        for n0 in range(0, N, chunk):
            xf = x[:, n0:n0 + chunk].float()
            d = torch.baddbmm(c_sq, xf, cf.transpose(1, 2), alpha=-2.0)
            d = d.min(dim=-1).values + (xf ** 2).sum(-1)
            total += d.clamp_min(0).double().sum()
            del xf, d
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    return total.item()


def result_check(x, labels, c):
    B, N, D = x.shape
    K = c.shape[1]
    lab = labels.long()
    counts = torch.bincount((lab + torch.arange(B, device=lab.device)[:, None] * K).reshape(-1),
                            minlength=B * K)
    inertia = inertia_fp32(x, c)
    cf = c.double()
    return {
        "inertia": inertia,
        "inertia_per_point": inertia / (B * N),
        "labels_sum": int(lab.sum().item()),
        "labels_weighted_checksum": int(((lab % 9973) * (torch.arange(N, device=lab.device) % 7919 + 1)
                                         ).sum().item()),
        "centroids_sum": cf.sum().item(),
        "centroids_abs_sum": cf.abs().sum().item(),
        "centroids_finite": bool(torch.isfinite(cf).all().item()),
        "empty_clusters_last_assign": int((counts == 0).sum().item()),
    }


# ----------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------
def bench_peer(name, make_impl, c0, x, iters, timer, args, device):
    out = {}
    impl = make_impl()
    state = {"c": c0.clone()}

    def one_step():
        state["c"], _ = impl.step(state["c"])

    out["step"] = timer.time_calls(one_step, args.warmup, args.repeats)
    out["sec_per_iter"] = out["step"]["median_s"]
    del state
    run_t = timer.time_calls(lambda: impl.run(c0, iters), max(1, args.warmup // 2),
                             args.run_repeats)
    run_t["iters_per_call"] = iters
    run_t["median_s_per_iter"] = run_t["median_s"] / iters
    out["run"] = run_t
    labels, c = impl.run(c0, iters)
    timer.sync()
    out["check"] = result_check(x, labels, c)
    lab32 = labels.to(torch.int32)
    del impl, labels, c
    free_memory(device)
    return out, lab32


def run_case(case, args, device, fk, fk_reason, timer):
    name, B, N, K, D, dts, iters, kind = case
    dtype = DTYPES[dts]
    iters = iters if iters is not None else args.iters
    rec = {"name": name, "kind": kind, "shape": {"B": B, "N": N, "K": K, "D": D},
           "dtype": dts, "iters_per_run": iters,
           "warm_start": kind == "svg2_warm2", "early_stop": False, "peers": {}}
    print("[case] %s B=%d N=%d K=%d D=%d %s iters=%d" % (name, B, N, K, D, dts, iters), flush=True)
    try:
        x, c0 = make_data(B, N, K, D, dtype, device, args.seed)
    except Exception as e:
        free_memory(device)
        rec["status"] = "oom" if is_oom(e) else "error"
        rec["error"] = "%s: %s" % (type(e).__name__, e)
        print("  data: %s" % rec["status"], flush=True)
        return rec
    rec["init"] = "K distinct random data points per batch (seed %d)" % args.seed
    if kind == "svg2_warm2" and args.svg2_prewarm > 0:
        try:
            # SVG2 reuses the previous step's centroids: start both peers from
            # centroids already refined by a few untimed Lloyd iterations.
            pre = TorchLloyd(x, K, "mm", args.max_dist_elems)
            c0 = pre.run(c0, args.svg2_prewarm)[1].contiguous()
            del pre
            rec["init"] += " + %d untimed torch Lloyd iterations (warm start)" % args.svg2_prewarm
        except Exception as e:
            rec["init"] += " (pre-warm failed: %s; random init used)" % type(e).__name__
        free_memory(device)
    rec["initial_inertia"] = inertia_fp32(x, c0)
    rec["initial_inertia_per_point"] = rec["initial_inertia"] / (B * N)

    peers = []
    if "flash" in args.peers:
        peers.append(("flash_kmeans", lambda: FlashLloyd(fk, x, K)))
    if "torch" in args.peers:
        peers.append(("torch_lloyd", lambda: TorchLloyd(x, K, args.torch_dist, args.max_dist_elems)))

    labels = {}
    for pname, make in peers:
        if pname == "flash_kmeans":
            reason = fk_reason
            if reason is None and device.type != "cuda":
                reason = "flash-kmeans needs a CUDA device (Triton kernels); device=%s" % device
            if reason is None and fk is None:
                reason = "flash-kmeans not importable"
            if reason is not None:
                rec["peers"][pname] = {"status": "skipped", "reason": reason}
                print("  %-13s skipped: %s" % (pname, reason), flush=True)
                continue
        try:
            res, lab = bench_peer(pname, make, c0, x, iters, timer, args, device)
            res["status"] = "ok"
            if pname == "torch_lloyd":
                t = TorchLloyd(x, K, args.torch_dist, args.max_dist_elems)
                res["dist"] = args.torch_dist
                res["n_chunks"] = t.n_chunks
            labels[pname] = lab
            rec["peers"][pname] = res
            print("  %-13s %.6f s/iter (step median), %.6f s/call run(%d it), inertia/pt %.5f"
                  % (pname, res["sec_per_iter"], res["run"]["median_s"], iters,
                     res["check"]["inertia_per_point"]), flush=True)
        except Exception as e:
            oom = is_oom(e)
            rec["peers"][pname] = {"status": "oom" if oom else "error",
                                   "error": "%s: %s" % (type(e).__name__, str(e)[:500])}
            if not oom:
                rec["peers"][pname]["traceback"] = traceback.format_exc()[-2000:]
            print("  %-13s %s: %s" % (pname, rec["peers"][pname]["status"], str(e)[:200]), flush=True)
        free_memory(device)
    if len(labels) == 2:
        a, b = labels["flash_kmeans"], labels["torch_lloyd"]
        rec["label_agreement_final_iter"] = (a == b).float().mean().item()
    p = rec["peers"]
    if p.get("flash_kmeans", {}).get("status") == "ok" and p.get("torch_lloyd", {}).get("status") == "ok":
        rec["speedup_flash_vs_torch_step"] = p["torch_lloyd"]["sec_per_iter"] / p["flash_kmeans"]["sec_per_iter"]
        rec["speedup_flash_vs_torch_run"] = p["torch_lloyd"]["run"]["median_s"] / p["flash_kmeans"]["run"]["median_s"]
    del x, c0, labels
    free_memory(device)
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="JSON output path (required unless --list)")
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    ap.add_argument("--quick", action="store_true", help="small shapes only (smoke test)")
    ap.add_argument("--only", action="append", default=[],
                    help="case name(s) to run; repeatable or comma-separated (see --list)")
    ap.add_argument("--list", action="store_true", help="print case names and exit")
    ap.add_argument("--peers", default="flash,torch", help="comma list of: flash,torch")
    ap.add_argument("--iters", type=int, default=5,
                    help="fixed Lloyd iterations per end-to-end run for non-SVG2 cases (SVG2 cases: 2)")
    ap.add_argument("--warmup", type=int, default=3, help="warm-up steps/calls before timing")
    ap.add_argument("--repeats", type=int, default=20, help="timed single iterations (>=20)")
    ap.add_argument("--run-repeats", type=int, default=20, help="timed end-to-end calls")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--svg2-prewarm", type=int, default=3,
                    help="SVG2 cases: untimed Lloyd iterations applied to the random initial "
                         "centroids before timing, to mimic a warm start (0 = random points)")
    ap.add_argument("--torch-dist", choices=["mm", "cdist"], default="mm",
                    help="torch peer distance: baddbmm matmul formulation or torch.cdist")
    ap.add_argument("--max-dist-elems", type=int, default=1 << 32,
                    help="torch peer: max elements of the [B, n, K] distance buffer (chunks N)")
    ap.add_argument("--tf32", action="store_true",
                    help="allow TF32 in torch matmuls (flash-kmeans' Triton tl.dot uses TF32 for fp32)")
    args = ap.parse_args()

    cases = QUICK_CASES if args.quick else FULL_CASES
    if args.list:
        for c in FULL_CASES + QUICK_CASES:
            print(c[0])
        return 0
    if not args.out:
        ap.error("--out is required")
    only = [s for o in args.only for s in o.split(",") if s]
    if only:
        known = {c[0]: c for c in FULL_CASES + QUICK_CASES}
        bad = [o for o in only if o not in known]
        if bad:
            ap.error("unknown case(s): %s (use --list)" % ", ".join(bad))
        cases = [known[o] for o in only]
    args.peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    if args.repeats < 20 and not args.quick:
        print("warning: --repeats < 20", file=sys.stderr)

    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            print("CUDA not available; use --device cpu", file=sys.stderr)
            return 2
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    torch.backends.cuda.matmul.allow_tf32 = bool(args.tf32)
    torch.backends.cudnn.allow_tf32 = bool(args.tf32)
    torch.set_grad_enabled(False)

    fk, fk_reason = (None, "not requested")
    if "flash" in args.peers:
        fk, fk_reason = load_flash()
    fk_ver = fk["version"] if fk else None
    if fk_ver is None:
        try:
            from importlib.metadata import version
            fk_ver = version("flash-kmeans")
        except Exception:
            fk_ver = None

    summary = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "device_arg": str(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": None,
        "flash_kmeans": fk_ver,
        "flash_kmeans_status": "ok" if fk else fk_reason,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "host": platform.node(),
        "torch_allow_tf32": bool(args.tf32),
        # tf32x3 or ieee make flash-kmeans' fp32 tl.dot as precise as Tessera's exact_f32
        "triton_f32_default": os.environ.get("TRITON_F32_DEFAULT"),
        "torch_dist": args.torch_dist,
        "quick": args.quick,
        "seed": args.seed,
        "svg2_prewarm": args.svg2_prewarm,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "run_repeats": args.run_repeats,
        "timing": "CUDA events per call, synchronised; median reported" if device.type == "cuda"
                  else "time.perf_counter per call; median reported",
        "notes": [
            "sec_per_iter = median seconds of one Lloyd iteration (assign+update), warm state",
            "run = end-to-end call with fixed iters from the shared initial centroids; "
            "flash: batch_kmeans_Euclid(x, K, max_iters=iters, tol=-1.0, init_centroids=c0) (never stops early)",
            "flash-kmeans fp32 uses Triton tl.dot's default precision (TF32 unless TRITON_F32_DEFAULT says "
            "otherwise, see triton_f32_default); torch peer TF32 per torch_allow_tf32",
            "check.inertia is computed in fp32 against the final centroids with a fresh exact assignment",
        ],
    }
    try:
        import triton
        summary["triton"] = triton.__version__
    except Exception:
        pass

    doc = {"summary": summary, "cases": []}
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)

    def dump():
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=2)
        os.replace(tmp, args.out)

    timer = Timer(device)
    for case in cases:
        try:
            doc["cases"].append(run_case(case, args, device, fk, fk_reason, timer))
        except Exception as e:  # last-resort guard: keep going
            free_memory(device)
            doc["cases"].append({"name": case[0], "status": "oom" if is_oom(e) else "error",
                                 "error": "%s: %s" % (type(e).__name__, str(e)[:500])})
        dump()
    dump()
    print("wrote %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
