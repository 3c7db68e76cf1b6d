// The carries of an SpMM whose teams split the merge path of row ends and nonzeros (csr.merge_path,
// csr.nnz_split): team t starts at (start_row[t], start_nnz[t]) (rows ended, nonzeros consumed),
// stores the rows that end on its stretch, and leaves its partial sum of the one row it leaves
// unfinished, start_row[t + 1], in carry[t * carry_ld ...]. add_path_carries adds each row's
// carries into C, in team order (the same bits on every run), after the main kernel stored it.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "core/cuda_check.h"
#include "ops/cuda_common.cuh"
#include "ops/cuda_kernels.h"

namespace tessera::ops::cuda {
namespace {

constexpr int kFixupWarps = 8;

// The row team t carries into, or -1 when it carries nothing (it ends the path, or holds none of
// that row's nonzeros).
template <class I>
__device__ int64_t carried_row(const I* indptr, int64_t rows, const int64_t* start_row,
                               const int64_t* start_nnz, int64_t t) {
  const int64_t r = start_row[t + 1];
  if (r >= rows) return -1;
  const int64_t first = start_nnz[t] > int64_t(indptr[r]) ? start_nnz[t] : int64_t(indptr[r]);
  return start_nnz[t + 1] > first ? r : -1;
}

// One warp per team and 32-feature slice (blockIdx.y); the warps of the first team carrying a
// row add that row's carries, in team order, into C. Most rows cross one boundary, so a chain of
// one is found without a search. Slices in parallel: a warp looping over a wide row's features
// would wait on each slice's loads in turn (the C stores keep them from overlapping).
template <class I>
__global__ void __launch_bounds__(kFixupWarps* kWarp)
    merge_path_fixup_kernel(const I* indptr, int64_t rows, int64_t teams, const int64_t* start_row,
                            const int64_t* start_nnz, const float* carry, int64_t carry_ld,
                            DenseView<float> c, float alpha) {
  const int64_t first = int64_t(blockIdx.x) * kFixupWarps + threadIdx.x / kWarp;
  if (first >= teams) return;
  // Both looked up at once (independent loads); the warp of a later team of the chain leaves.
  const int64_t r = carried_row(indptr, rows, start_row, start_nnz, first);
  const int64_t previous = first > 0 ? carried_row(indptr, rows, start_row, start_nnz, first - 1) : -1;
  if (r < 0 || previous == r) return;
  // The teams carrying r are first..last-1: those whose unfinished row (start_row[t + 1]) is r.
  int64_t last = first + 1;
  if (last < teams && start_row[last + 1] == r) {
    int64_t lo = last + 1, hi = teams;  // smallest t in [lo, teams] with start_row[t + 1] > r
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (start_row[mid + 1] > r) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    last = lo;
  }
  for (int64_t f = int64_t(blockIdx.y) * kWarp + threadIdx.x % kWarp; f < c.cols;
       f += int64_t(gridDim.y) * kWarp) {
    float sum = 0.0f;
#pragma unroll 4
    for (int64_t t = first; t < last; ++t) sum += carry[t * carry_ld + f];
    c.data[r * c.ld + f] += alpha * sum;
  }
}

}  // namespace

/// Launches the fix-up on `stream` (start_row / start_nnz hold teams + 1 entries).
template <class I>
void add_path_carries(const I* indptr, int64_t rows, int64_t teams, const int64_t* start_row,
                      const int64_t* start_nnz, const float* carry, int64_t carry_ld, DenseView<float> c,
                      float alpha, cudaStream_t stream, const char* who) {
  const dim3 grid(grid_for(teams, kFixupWarps), unsigned(std::min<int64_t>((c.cols + kWarp - 1) / kWarp, 65535)));
  merge_path_fixup_kernel<<<grid, kFixupWarps * kWarp, 0, stream>>>(indptr, rows, teams, start_row, start_nnz,
                                                                     carry, carry_ld, c, alpha);
  TSR_CUDA_CHECK_LAUNCH(who);
}

}  // namespace tessera::ops::cuda
