// CSR SpMM with the GNN aggregations on the GPU: C[r, f] = alpha * reduce_e(A[r, e] * B[col(e), f])
// + beta * C[r, f] for reduce = max, min or mean, with an optional arg output for max / min.
// The semantics are the host kernel's (ops/spmm/spmm.cpp) and reference::spmm_reduce's:
// - a row's products meet in the row's order; max / min start from the first product as it is
//   (a -0 stays -0), a later one wins when strictly better, or when it is a NaN and the best is
//   not (NaN propagates); ties keep the earlier entry, whose column goes to arg;
// - an empty row reduces to 0, its arg is -1; mean divides the f32 sum by the row's entries.
// Layout: a group of tpr lanes owns a row and one feature per lane of a tile of tpr features
// (tiles over blockIdx.y, grid-stride past 65535); the group loads tpr (col, val) pairs at a time
// and hands them out by shuffle, in group-uniform control flow. Every output is written by one
// thread in a fixed order: no atomics, the same bits every run. Gathers go one at a time: the
// structure of the sum kernels, not yet their tuning.
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

template <class V, class I>
__global__ void __launch_bounds__(kThreads)
    spmm_csr_reduce_kernel(CsrView<V, I> a, DenseView<const V> b, DenseView<float> c, float alpha,
                           float beta, int mode, int64_t* arg, int tpr) {
  const int lane = threadIdx.x % tpr;
  const int64_t row = int64_t(blockIdx.x) * (kThreads / tpr) + threadIdx.x / tpr;
  if (row >= a.rows) return;  // whole groups leave together
  const unsigned mask = team_mask(tpr);
  const int64_t begin = a.indptr[row], end = a.indptr[row + 1];
  const int64_t F = c.cols;
  for (int64_t f0 = int64_t(blockIdx.y) * tpr; f0 < F; f0 += int64_t(gridDim.y) * tpr) {
    const int64_t f = f0 + lane;
    const bool mine = f < F;  // the ragged last tile: lanes past F only hand out entries
    float best = 0.0f, sum = 0.0f;
    int64_t who = -1;
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
        const float p = __fmul_rn(v, load_f32(b.data[j * b.ld + f]));  // a plain f32 product
        if (mode == kMean) {
          sum += p;
        } else if (e0 + k == begin) {
          best = p, who = j;
        } else {
          const bool wins = (mode == kMax ? p > best : p < best) || (p != p && best == best);
          if (wins) best = p, who = j;
        }
      }
    }
    if (!mine) continue;
    float value = best;
    if (mode == kMean) value = end > begin ? sum * (1.0f / float(end - begin)) : 0.0f;
    value = __fmul_rn(alpha, value);
    float* out = c.data + row * c.ld + f;
    *out = beta == 0.0f ? value : __fadd_rn(value, __fmul_rn(beta, *out));
    if (arg != nullptr) arg[row * F + f] = who;
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
  const dim3 grid(grid_for(a.rows, kThreads / tpr), unsigned(tiles < 65535 ? tiles : 65535));
  const int mode = reduce == SpmmReduce::max ? kMax : reduce == SpmmReduce::min ? kMin : kMean;
  spmm_csr_reduce_kernel<V, I><<<grid, kThreads, 0, static_cast<cudaStream_t>(ctx.stream())>>>(
      a, b, c, alpha, beta, mode, arg, tpr);
  TSR_CUDA_CHECK_LAUNCH("spmm_csr_reduce");
}

#define TSR_INSTANTIATE_SPMM_REDUCE_CUDA(V, I)                                                 \
  template void spmm_csr_reduce(Context&, const CsrView<V, I>&, DenseView<const V>,            \
                                DenseView<float>, float, float, SpmmReduce, int64_t*);
TSR_FOR_EACH_COMPUTE_TYPE(TSR_INSTANTIATE_SPMM_REDUCE_CUDA)

}  // namespace tessera::ops::cuda
