// CSR SpMM with the GNN aggregations on the GPU: C[r, f] = alpha * reduce_e(A[r, e] * B[col(e), f])
// + beta * C[r, f] for reduce = max, min or mean, with an optional arg output for max / min.
// The semantics are the host kernel's (ops/spmm/spmm.cpp) and reference::spmm_reduce's:
// - a row's products meet in the row's order; max / min start from the first product as it is
//   (a -0 stays -0), a later one wins when strictly better, or when it is a NaN and the best is
//   not (NaN propagates); ties keep the earlier entry, whose column goes to arg;
// - an empty row reduces to 0, its arg is -1; mean divides the f32 sum by the row's entries.
// Layout: the merge path of row ends and nonzeros (as csr.merge_path splits it) cut into stretches
// of ipt items, a group of tpr lanes a stretch, one feature per lane of a tile of tpr features
// (tiles over blockIdx.y, grid-stride past 65535); the group loads tpr (col, val) pairs at a time
// and hands them out by shuffle, in group-uniform control flow. So a hub row is shared by many
// groups (a group a row made products-like's max 24x slower than its sum, and one row of 2.1M
// nonzeros 5600x; bench/RESULTS.md, session 27). Where no row is longer than a stretch (the
// Context's row-length hint), a group takes a row whole: no partials, one launch.
// Invariants:
// - A row that lies wholly in one stretch (its first nonzero and its end) is finished there.
// - A row begun before its last stretch leaves partials: the tail partial of each earlier stretch
//   that holds any of it (tail[t], possibly empty) and the head partial of the stretch it ends in
//   (head[t]). A second kernel combines them in stretch order and finishes the row. Combining is
//   associative for these rules (max / min: the first NaN, else the first strict best; mean: a
//   sum), and every output is written by one thread in a fixed order: no atomics, the same bits
//   every run.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>

#include "core/cuda_check.h"
#include "core/error.h"
#include "ops/cuda_common.cuh"
#include "ops/cuda_kernels.h"
#include "ops/spmm/spmm.h"

namespace tessera::ops::cuda {

namespace {

constexpr int kThreads = 256;
enum Mode : int { kMax = 1, kMin = 2, kMean = 3 };

// A partial reduction of a stretch of one row, for one feature: best / who for max and min (who
// = -1: no product yet), sum for mean.
struct Partial {
  float best = 0.0f, sum = 0.0f;
  int64_t who = -1;
};

// `later` folded into `p` (which holds earlier products): the rules of a row's walk.
__device__ __forceinline__ void combine(int mode, Partial& p, const Partial& later) {
  if (mode == kMean) {
    p.sum += later.sum;
    return;
  }
  if (later.who < 0) return;
  const bool wins = p.who < 0 || (mode == kMax ? later.best > p.best : later.best < p.best) ||
                    (later.best != later.best && p.best == p.best);
  if (wins) p.best = later.best, p.who = later.who;
}

// C's entry for a row of `entries` nonzeros reduced to p (alpha, beta; arg).
__device__ __forceinline__ void finish(int mode, const Partial& p, int64_t entries, float alpha, float beta,
                                       float* out, int64_t* arg_out) {
  float value = p.best;
  if (mode == kMean) value = entries > 0 ? p.sum * (1.0f / float(entries)) : 0.0f;
  value = __fmul_rn(alpha, value);
  *out = beta == 0.0f ? value : __fadd_rn(value, __fmul_rn(beta, *out));
  if (arg_out != nullptr) *arg_out = p.who;
}

// Partial slots: [stretch][feature], F features a stretch.
struct Partials {
  float* best = nullptr;
  float* sum = nullptr;
  int64_t* who = nullptr;
  __device__ void store(int64_t slot, const Partial& p) const {
    best[slot] = p.best, sum[slot] = p.sum, who[slot] = p.who;
  }
  __device__ Partial load(int64_t slot) const { return Partial{best[slot], sum[slot], who[slot]}; }
};

// Stretch t by a group: every row with items in it, each row's nonzeros in the stretch reduced in
// order; a row wholly here is finished, the others leave head[t] (the row begun before t, ending
// here) or tail[t] (the row left unfinished, begun here or before). Without stretches (start_row
// null: rows no longer than a stretch would be), group t takes row t whole.
template <class V, class I>
__global__ void __launch_bounds__(kThreads)
    spmm_csr_reduce_kernel(CsrView<V, I> a, DenseView<const V> b, DenseView<float> c, float alpha, float beta,
                           int mode, int64_t* arg, int tpr, const int64_t* start_row, const int64_t* start_nnz,
                           int64_t stretches, Partials head, Partials tail) {
  const int lane = threadIdx.x % tpr;
  const int64_t t = int64_t(blockIdx.x) * (kThreads / tpr) + threadIdx.x / tpr;
  if (t >= stretches) return;  // whole groups leave together
  const unsigned mask = team_mask(tpr);
  const bool whole_rows = start_row == nullptr;
  // Rows [row0, row1) end here; row1, when < rows, is left unfinished.
  const int64_t row0 = whole_rows ? t : start_row[t], row1 = whole_rows ? t + 1 : start_row[t + 1];
  const int64_t nz0 = whole_rows ? 0 : start_nnz[t], nz1 = whole_rows ? INT64_MAX : start_nnz[t + 1];
  const int64_t last = whole_rows ? t : row1;  // the last row with items here
  const int64_t F = c.cols;
  for (int64_t f0 = int64_t(blockIdx.y) * tpr; f0 < F; f0 += int64_t(gridDim.y) * tpr) {
    const int64_t f = f0 + lane;
    const bool mine = f < F;  // the ragged last tile: lanes past F only hand out entries
    for (int64_t row = row0; row <= last && row < a.rows; ++row) {
      const int64_t row_begin = a.indptr[row], row_end = a.indptr[row + 1];
      const int64_t begin = row_begin > nz0 ? row_begin : nz0, end = row_end < nz1 ? row_end : nz1;
      Partial p;
      for (int64_t e0 = begin; e0 < end; e0 += tpr) {
        I col = 0;
        float val = 0.0f;
        if (e0 + lane < end) {
          col = a.indices[e0 + lane];
          val = load_f32(a.values[e0 + lane]);
        }
        const int batch = end - e0 < tpr ? int(end - e0) : tpr;
        for (int k = 0; k < batch; ++k) {
          const int64_t j = int64_t(__shfl_sync(mask, col, k, tpr));
          const float v = __shfl_sync(mask, val, k, tpr);
          if (!mine) continue;
          const float prod = __fmul_rn(v, load_f32(b.data[j * b.ld + f]));  // a plain f32 product
          if (mode == kMean) {
            p.sum += prod;
          } else {
            combine(mode, p, Partial{prod, 0.0f, j});  // the first product starts the partial
          }
        }
      }
      if (!mine) continue;
      if (row == row1) {
        tail.store(t * F + f, p);  // unfinished: its end lies in a later stretch
      } else if (row_begin < nz0) {
        head.store(t * F + f, p);  // begun in an earlier stretch (only row0 can be)
      } else {
        finish(mode, p, row_end - row_begin, alpha, beta, c.data + row * c.ld + f,
               arg != nullptr ? arg + row * F + f : nullptr);
      }
    }
  }
}

// A group a stretch t whose first row r = start_row[t] was begun earlier and ends here: combines
// the tail partials of the stretches before t that leave r unfinished (the chain [first, t)), then
// head[t], in that order, and finishes r.
template <class I>
__global__ void __launch_bounds__(kThreads)
    spmm_csr_reduce_rows_kernel(const I* indptr, int64_t rows, DenseView<float> c, float alpha, float beta,
                                int mode, int64_t* arg, int tpr, const int64_t* start_row,
                                const int64_t* start_nnz, int64_t stretches, Partials head, Partials tail) {
  const int lane = threadIdx.x % tpr;
  const int64_t t = int64_t(blockIdx.x) * (kThreads / tpr) + threadIdx.x / tpr;
  if (t >= stretches) return;
  const int64_t r = start_row[t];
  if (r >= rows || start_row[t + 1] == r || int64_t(indptr[r]) >= start_nnz[t]) return;
  // The first stretch that leaves r unfinished: the smallest s with start_row[s + 1] >= r.
  int64_t lo = 0, hi = t;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (start_row[mid + 1] >= r) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  const int64_t F = c.cols;
  for (int64_t f = int64_t(blockIdx.y) * tpr + lane; f < F; f += int64_t(gridDim.y) * tpr) {
    Partial p;
#pragma unroll 4
    for (int64_t s = lo; s < t; ++s) combine(mode, p, tail.load(s * F + f));
    combine(mode, p, head.load(t * F + f));
    finish(mode, p, int64_t(indptr[r + 1]) - int64_t(indptr[r]), alpha, beta, c.data + r * c.ld + f,
           arg != nullptr ? arg + r * F + f : nullptr);
  }
}

}  // namespace

template <class V, class I>
void spmm_csr_reduce(Context& ctx, const CsrView<V, I>& a, DenseView<const V> b, DenseView<float> c,
                     float alpha, float beta, SpmmReduce reduce, int64_t* arg) {
  TSR_CHECK(reduce != SpmmReduce::sum, "spmm_csr_reduce: sum runs in the SpMM kernels");
  TSR_CHECK(arg == nullptr || device_memory_of(arg, ctx.device()),
            "spmm: the arg output must be in device memory (of the context's device) when A is");
  if (a.rows == 0 || c.cols == 0) return;
  // One lane a feature up to a warp; at least 4 lanes, so that a row's entries load 4 at a time.
  int tpr = 4;
  while (tpr < kWarp && tpr < c.cols) tpr *= 2;
  const int64_t tiles = (c.cols + tpr - 1) / tpr;
  // Stretches of the merge path, a power of two in [32, 4096] items: enough groups to fill the
  // GPU twice (132 SMs x 2048 threads), and at least sqrt(path) / 8 items, so that a hub row's
  // chain of partials (combined in turn by one group) stays short.
  const int64_t path = a.rows + a.nnz;
  const double fill = double(path) * double(tpr) / (2.0 * 132.0 * 2048.0);
  const double least = std::max(fill, std::sqrt(double(path)) / 8.0);
  int64_t ipt = 32;
  while (ipt < 4096 && double(ipt) < least) ipt *= 2;
  const auto stream = static_cast<cudaStream_t>(ctx.stream());
  const int mode = reduce == SpmmReduce::max ? kMax : reduce == SpmmReduce::min ? kMin : kMean;
  const unsigned tiles_y = unsigned(tiles < 65535 ? tiles : 65535);
  // Rows no longer than a stretch: a group a row, no partials (a matrix of 400k nonzeros in rows
  // of about 20 took 0.083 ms so against 0.106 in stretches on the H200). The longest row comes
  // from the Context's hint, measured here once per matrix when none is recorded.
  int64_t longest = ctx.row_length_hint(a.indptr, a.rows, a.nnz);
  if (longest < 0) {
    longest = max_row_length(ctx, a);
    ctx.set_row_length_hint(a.indptr, a.rows, a.nnz, longest);
  }
  if (longest <= ipt) {
    spmm_csr_reduce_kernel<V, I><<<dim3(grid_for(a.rows, kThreads / tpr), tiles_y), kThreads, 0, stream>>>(
        a, b, c, alpha, beta, mode, arg, tpr, nullptr, nullptr, a.rows, Partials{}, Partials{});
    TSR_CUDA_CHECK_LAUNCH("spmm_csr_reduce (whole rows)");
    return;
  }
  const int64_t stretches = (path + ipt - 1) / ipt;
  // Workspace: stretch starts (stretches + 1 of each), then head and tail partials, F a stretch.
  const auto padded = [](size_t bytes) { return (bytes + 255) / 256 * 256; };
  const size_t starts_bytes = padded(size_t(stretches + 1) * sizeof(int64_t));
  const size_t slots = size_t(stretches) * size_t(c.cols);
  const size_t float_bytes = padded(slots * sizeof(float)), who_bytes = padded(slots * sizeof(int64_t));
  auto* base = static_cast<unsigned char*>(ctx.workspace(2 * starts_bytes + 2 * (2 * float_bytes + who_bytes)));
  auto* start_row = reinterpret_cast<int64_t*>(base);
  auto* start_nnz = reinterpret_cast<int64_t*>(base + starts_bytes);
  unsigned char* at = base + 2 * starts_bytes;
  const auto partials = [&] {
    Partials p{reinterpret_cast<float*>(at), reinterpret_cast<float*>(at + float_bytes),
               reinterpret_cast<int64_t*>(at + 2 * float_bytes)};
    at += 2 * float_bytes + who_bytes;
    return p;
  };
  const Partials head = partials(), tail = partials();
  path_starts_kernel<I><<<grid_for(stretches + 1, kThreads), kThreads, 0, stream>>>(
      a.indptr, a.rows, a.nnz, ipt, stretches, start_row, start_nnz, nullptr, 0);
  TSR_CUDA_CHECK_LAUNCH("spmm_csr_reduce (stretch starts)");
  const dim3 grid(grid_for(stretches, kThreads / tpr), tiles_y);
  spmm_csr_reduce_kernel<V, I><<<grid, kThreads, 0, stream>>>(a, b, c, alpha, beta, mode, arg, tpr, start_row,
                                                              start_nnz, stretches, head, tail);
  TSR_CUDA_CHECK_LAUNCH("spmm_csr_reduce");
  spmm_csr_reduce_rows_kernel<I><<<grid, kThreads, 0, stream>>>(
      a.indptr, a.rows, c, alpha, beta, mode, arg, tpr, start_row, start_nnz, stretches, head, tail);
  TSR_CUDA_CHECK_LAUNCH("spmm_csr_reduce (rows across stretches)");
}

#define TSR_INSTANTIATE_SPMM_REDUCE_CUDA(V, I)                                                 \
  template void spmm_csr_reduce(Context&, const CsrView<V, I>&, DenseView<const V>,            \
                                DenseView<float>, float, float, SpmmReduce, int64_t*);
TSR_FOR_EACH_COMPUTE_TYPE(TSR_INSTANTIATE_SPMM_REDUCE_CUDA)

}  // namespace tessera::ops::cuda
