// CSR SpMM on the GPU for 16-bit values, schedule csr.nnz_split: the nonzeros are cut into equal
// contiguous stretches of ept, one per team of 4 lanes (8 features a lane: a 32-feature tile, one
// 64-byte row of B a gather), g gathers a team in flight; ept = 0 makes as many teams as the GPU
// holds at once (one wave).
// Made for bf16 / f16 at F = 32 on large graphs, where the gather rate, not bytes, sets the time
// (bench/RESULTS.md, "bf16 at F = 32, the bare gather"): a team's loop holds few registers, so
// more rows are in flight per multiprocessor than the merge path's (1.6x our f32 on reddit-like
// against the merge path's 1.24x). On a graph whose hubs are neighbours (R-MAT in its own vertex
// order) it is slower than the merge path (not yet explained), and the default heuristic cannot
// tell such a graph from a relabelled one, so it leaves this schedule to be chosen.
//
// Invariants:
// - C is first set to beta * C (zeroed when beta == 0) by scale_rows, the launch the atomic
//   Hybrid path uses too.
// - A row that starts and ends inside a team's stretch is the team's: it is written with plain
//   16-byte stores (added to the scaled C when beta != 0). The first and last rows of a stretch
//   may be shared with the neighbouring teams: their partial sums are added with atomics, so the
//   bits may differ from run to run (the schedule does not promise determinism).
// - Rows outside every stretch (no nonzeros at either end of the matrix) keep beta * C.
#include <algorithm>
#include <climits>
#include <cstdint>

#include "core/cuda_check.h"
#include "core/error.h"
#include "ops/cuda_common.cuh"
#include "ops/cuda_kernels.h"

namespace tessera::ops::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kTeamLanes = 4;     // lanes of a team
constexpr int kLaneFeatures = 8;  // features of a lane: one 16-byte load of 16-bit values
constexpr int kTileFeatures = kTeamLanes * kLaneFeatures;
// The register budget of the gather loop: 80 a thread at g <= 8, 128 at g = 16.
constexpr int min_blocks_per_sm(int g) { return g <= 8 ? 3 : 2; }

// The row holding nonzero e (< nnz), known to lie in rows [lo, hi]: the last r with indptr[r] <= e.
template <class I>
__device__ int64_t row_of_nonzero(const I* indptr, int64_t lo, int64_t hi, int64_t e) {
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (int64_t(indptr[mid]) <= e) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// The merge path of the row ends (indptr[1..rows]) and the nonzeros (0..nnz-1), a row end going
// first when indptr[r + 1] <= j: how many nonzeros its first d items hold.
template <class I>
__device__ int64_t nonzeros_in_items(const I* indptr, int64_t rows, int64_t nnz, int64_t d) {
  int64_t lo = max(int64_t(0), d - nnz), hi = min(d, rows);  // row ends among the d items
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (int64_t(indptr[mid + 1]) <= d - mid - 1) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return d - lo;
}

template <class V, class I, int G>
__global__ void __launch_bounds__(kThreads, min_blocks_per_sm(G))
    spmm_csr_nnz_split_kernel(CsrView<V, I> a, DenseView<const V> b, DenseView<float> c, float alpha,
                              bool add_to_c, bool count_rows, int64_t per_team, int64_t teams) {
  static_assert(G % kTeamLanes == 0, "a batch is G / 4 nonzeros a lane");
  const int lane = threadIdx.x % kTeamLanes;
  const int64_t team = (int64_t(blockIdx.x) * kThreads + threadIdx.x) / kTeamLanes;
  if (team >= teams) return;  // whole teams leave together
  const unsigned mask = 0xfu << (threadIdx.x % kWarp / kTeamLanes * kTeamLanes);
  int64_t begin, end, first_row = 0, last_row = a.rows - 1;  // the row holding begin is in [first, last]
  if (count_rows) {
    // The team's items (row ends + nonzeros) are [team * per_team, + per_team): lane 0 finds how
    // many nonzeros come before them, lane 1 (in parallel) how many before the next team's.
    const int64_t total = a.rows + a.nnz;
    const int64_t d = min(total, (team + (lane & 1)) * per_team);
    const int64_t nonzeros = nonzeros_in_items(a.indptr, a.rows, a.nnz, d);
    const int64_t rows_ended = d - nonzeros;
    begin = __shfl_sync(mask, nonzeros, 0, kTeamLanes);
    end = __shfl_sync(mask, nonzeros, 1, kTeamLanes);
    // Row ends before nonzero begin are all among the first d0 items, and the row ends at or after
    // nonzero begin's row come after it: begin's row lies between the two coordinates' rows.
    first_row = __shfl_sync(mask, rows_ended, 0, kTeamLanes);
    last_row = min(last_row, __shfl_sync(mask, rows_ended, 1, kTeamLanes));
  } else {
    begin = min(a.nnz, team * per_team);
    end = min(a.nnz, begin + per_team);
  }
  if (begin >= end) return;
  const int64_t f = int64_t(blockIdx.y) * kTileFeatures + lane * kLaneFeatures;
  const char* b_at = reinterpret_cast<const char*>(b.data + f);
  const int64_t b_ld_bytes = b.ld * int64_t(sizeof(V));
  const auto b_row = [&](I j) { return reinterpret_cast<const V*>(b_at + int64_t(j) * b_ld_bytes); };

  int64_t row = row_of_nonzero(a.indptr, first_row, last_row, begin);
  int64_t row_end = a.indptr[row + 1];
  bool shared = int64_t(a.indptr[row]) < begin;  // the row began in an earlier stretch
  float acc[kLaneFeatures] = {};
  const auto store_row = [&] {
    float* out = c.data + row * c.ld + f;
    if (shared) {
#pragma unroll
      for (int i = 0; i < kLaneFeatures; ++i) atomicAdd(out + i, alpha * acc[i]);
    } else {
      float4 lo = make_float4(0.f, 0.f, 0.f, 0.f), hi = lo;
      if (add_to_c) lo = reinterpret_cast<const float4*>(out)[0], hi = reinterpret_cast<const float4*>(out)[1];
      lo = make_float4(lo.x + alpha * acc[0], lo.y + alpha * acc[1], lo.z + alpha * acc[2], lo.w + alpha * acc[3]);
      hi = make_float4(hi.x + alpha * acc[4], hi.y + alpha * acc[5], hi.z + alpha * acc[6], hi.w + alpha * acc[7]);
      reinterpret_cast<float4*>(out)[0] = lo;
      reinterpret_cast<float4*>(out)[1] = hi;
    }
#pragma unroll
    for (int i = 0; i < kLaneFeatures; ++i) acc[i] = 0.0f;
  };
  // Stores the row and moves to the next, which holds a nonzero of the stretch still to come
  // (so row + 1 < rows and indptr[row + 2] exists).
  const auto next_row = [&] {
    store_row();
    shared = false;  // the next row starts inside this stretch
    ++row;
    row_end = a.indptr[row + 1];
  };
  const auto add = [&](const PackedVec<kLaneFeatures, V>& x, float v) {
#pragma unroll
    for (int i = 0; i < kLaneFeatures; ++i) acc[i] += v * x(i);
  };

  int64_t e = begin;
  for (; e + G <= end; e += G) {
    // Lane l loads nonzeros l, l + 4, ... of the batch; the team shares them by shuffles.
    I my_col[G / kTeamLanes];
    float my_val[G / kTeamLanes];
#pragma unroll
    for (int q = 0; q < G / kTeamLanes; ++q) {
      my_col[q] = a.indices[e + q * kTeamLanes + lane];
      my_val[q] = load_f32(a.values[e + q * kTeamLanes + lane]);
    }
    PackedVec<kLaneFeatures, V> x[G];
    float v[G];
#pragma unroll
    for (int g = 0; g < G; ++g) {
      const I j = __shfl_sync(mask, my_col[g / kTeamLanes], g % kTeamLanes, kTeamLanes);
      v[g] = __shfl_sync(mask, my_val[g / kTeamLanes], g % kTeamLanes, kTeamLanes);
      x[g].load_read_only(b_row(j));
    }
    if (e + G <= row_end) {  // no row ends among these G nonzeros (the common case)
#pragma unroll
      for (int g = 0; g < G; ++g) add(x[g], v[g]);
    } else {
#pragma unroll
      for (int g = 0; g < G; ++g) {
        while (e + g >= row_end) next_row();
        add(x[g], v[g]);
      }
    }
  }
  for (; e < end; ++e) {  // the stretch's last < G nonzeros, one at a time
    PackedVec<kLaneFeatures, V> x;
    x.load_read_only(b_row(a.indices[e]));
    while (e >= row_end) next_row();
    add(x, load_f32(a.values[e]));
  }
  shared = shared || row_end > end;  // the last row goes on into the next stretch
  store_row();
}

}  // namespace

template <class V, class I>
void spmm_csr_nnz_split(Context& ctx, const CsrView<V, I>& a, DenseView<const V> b, DenseView<float> c,
                        float alpha, float beta, int g, int64_t ept, bool count_rows) {
  constexpr const char* kWho = "spmm_csr_nnz_split";
  if constexpr (sizeof(V) != 2) {
    TSR_FAIL(kWho, ": takes bf16 or f16 values (16-byte loads of 8 features)");
  } else {
    TSR_CHECK(g == 4 || g == 8 || g == 16, kWho, ": g = ", g, " must be 4, 8 or 16");
    TSR_CHECK(ept >= 0, kWho, ": ept = ", ept, " must be >= 0 (0: one wave of teams)");
    TSR_CHECK(c.cols % kTileFeatures == 0, kWho, ": F = ", c.cols, " must be a multiple of ",
              kTileFeatures);
    const auto aligned = [](const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; };
    TSR_CHECK(b.ld % kLaneFeatures == 0 && c.ld % kLaneFeatures == 0 &&
                  aligned(b.data, kLaneFeatures * sizeof(V)) && aligned(c.data, kLaneFeatures * sizeof(float)),
              kWho, ": needs B and C rows aligned to ", kLaneFeatures, " elements (leading dimensions ",
              b.ld, ", ", c.ld, ")");
    const int64_t tiles = c.cols / kTileFeatures;
    TSR_CHECK(tiles <= 65535, kWho, ": F = ", c.cols, " needs more than 65535 feature tiles");
    if (a.rows == 0 || c.cols == 0) return;
    if (beta != 1.0f) scale_rows(ctx, c, beta);  // C = beta * C (zeroed, unread, when beta == 0)
    const auto stream = static_cast<cudaStream_t>(ctx.stream());
    if (a.nnz == 0) return;
    const auto kernel = g == 16  ? spmm_csr_nnz_split_kernel<V, I, 16>
                        : g == 8 ? spmm_csr_nnz_split_kernel<V, I, 8>
                                 : spmm_csr_nnz_split_kernel<V, I, 4>;
    const int64_t items = count_rows ? a.rows + a.nnz : a.nnz;  // what the stretches split evenly
    int64_t per_team = ept;
    if (per_team == 0) {  // one wave: the blocks the GPU holds at once, shared among the tiles
      int device = 0, sms = 0, per_sm = 0;
      TSR_CUDA_CHECK(cudaGetDevice(&device));
      TSR_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
      TSR_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0));
      const int64_t blocks = std::max<int64_t>(1, int64_t(sms) * std::max(per_sm, 1) / tiles);
      const int64_t wave = std::min(blocks * (kThreads / kTeamLanes), items);
      per_team = (items + wave - 1) / wave;
    }
    const int64_t teams = (items + per_team - 1) / per_team;
    TSR_CHECK((teams + kThreads / kTeamLanes - 1) / (kThreads / kTeamLanes) <= INT32_MAX, kWho, ": ept = ",
              per_team, " makes ", teams, " teams, more than one launch holds; raise ept");
    const dim3 grid(unsigned((teams + kThreads / kTeamLanes - 1) / (kThreads / kTeamLanes)), unsigned(tiles));
    kernel<<<grid, kThreads, 0, stream>>>(a, b, c, alpha, beta != 0.0f, count_rows, per_team, teams);
    TSR_CUDA_CHECK_LAUNCH(kWho);
  }
}

#define TSR_INSTANTIATE_SPMM_NNZ_SPLIT(V, I)                                                     \
  template void spmm_csr_nnz_split(Context&, const CsrView<V, I>&, DenseView<const V>, DenseView<float>, \
                                   float, float, int, int64_t, bool);
TSR_FOR_EACH_COMPUTE_TYPE(TSR_INSTANTIATE_SPMM_NNZ_SPLIT)

}  // namespace tessera::ops::cuda
