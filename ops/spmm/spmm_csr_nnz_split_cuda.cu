// CSR SpMM on the GPU for 16-bit values, schedule csr.nnz_split: the work is cut into equal
// contiguous stretches of ept items, one per team of 4 lanes (8 features a lane: a 32-feature
// tile, one 64-byte row of B a gather), g gathers a team in flight; ept = 0 makes as many teams as
// the GPU holds at once (one wave). The items are the nonzeros (rows = 0), or the merge of row
// ends and nonzeros (rows = 1, the merge path's balance: a team walks at most ept rows).
// Made for bf16 / f16 at F = 32 on large graphs, where the gather rate, not bytes, sets the time
// (bench/RESULTS.md, "bf16 at F = 32, the bare gather"): a team's loop holds few registers, so
// more rows are in flight per multiprocessor than the merge path's (1.6x our f32 on reddit-like
// against the merge path's 1.24x). With rows = 0 a graph whose empty rows are neighbours (R-MAT
// in its own vertex order) gives some teams thousands of rows to walk, and the schedule loses to
// the merge path there; rows = 1 bounds that walk (RESULTS.md, "csr.nnz_split, rows = 1"). The
// default heuristic leaves this schedule to be chosen: it does not promise the same bits.
//
// Invariants:
// - C is first set to beta * C (zeroed when beta == 0) by scale_rows, the launch the atomic
//   Hybrid path uses too.
// - Team starts come from a pre-pass, one thread a row (no search): starts[k] is the first
//   nonzero of team k and the row to walk from to reach it; starts[teams] = (rows, nnz).
// - A row that starts and ends inside a team's stretch is the team's: it is written with plain
//   16-byte stores (added to the scaled C when beta != 0). The first and last rows of a stretch
//   may be shared with the neighbouring teams: their partial sums are added with atomics, so the
//   bits may differ from run to run (the schedule does not promise determinism).
// - Rows outside every stretch (empty rows between two teams' nonzeros or at either end of the
//   matrix) keep beta * C.
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
constexpr int kMinBlocksPerSm = 3;  // 80 registers a thread: the gather loop's budget

// Where a team's stretch starts: its first nonzero, and the row to walk from to reach it.
struct TeamStart {
  int64_t row;
  int64_t nonzero;
};

// Team starts, one thread per row: the teams whose first item lies in row r. The items are
// the nonzeros (count_rows false) or the merge of row ends and nonzeros (true: row r's nonzeros
// are items indptr[r] + r ..., its end the item after them, a row end going before nonzero j
// when indptr[r + 1] <= j). A team starting on row r's end starts on row r + 1 with nonzero
// indptr[r + 1]; starts[teams] = (rows, nnz) closes the last team's stretch.
template <class I>
__global__ void nnz_split_starts_kernel(const I* indptr, int64_t rows, int64_t nnz, bool count_rows,
                                        int64_t per_team, int64_t teams, TeamStart* starts) {
  const int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r == 0) starts[teams] = TeamStart{rows, nnz};
  if (r >= rows) return;
  const int64_t row_begin = indptr[r], row_end = indptr[r + 1];
  const int64_t shift = count_rows ? r : 0;  // items before row r's first nonzero, less indptr[r]
  const int64_t first = row_begin + shift, last = row_end + shift - (count_rows ? 0 : 1);
  for (int64_t k = (first + per_team - 1) / per_team; k * per_team <= last; ++k) {
    const int64_t d = k * per_team, nonzero = d - shift;
    starts[k] = nonzero < row_end ? TeamStart{r, nonzero} : TeamStart{r + 1, row_end};
  }
}

template <class V, class I, int G>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSm)
    spmm_csr_nnz_split_kernel(CsrView<V, I> a, DenseView<const V> b, DenseView<float> c, float alpha,
                              bool add_to_c, const TeamStart* starts, int64_t teams) {
  static_assert(G % kTeamLanes == 0, "a batch is G / 4 nonzeros a lane");
  const int lane = threadIdx.x % kTeamLanes;
  const int64_t team = (int64_t(blockIdx.x) * kThreads + threadIdx.x) / kTeamLanes;
  if (team >= teams) return;  // whole teams leave together
  const unsigned mask = 0xfu << (threadIdx.x % kWarp / kTeamLanes * kTeamLanes);
  const int64_t begin = starts[team].nonzero, end = starts[team + 1].nonzero;
  if (begin >= end) return;
  const int64_t f = int64_t(blockIdx.y) * kTileFeatures + lane * kLaneFeatures;
  const char* b_at = reinterpret_cast<const char*>(b.data + f);
  const int64_t b_ld_bytes = b.ld * int64_t(sizeof(V));
  const auto b_row = [&](I j) { return reinterpret_cast<const V*>(b_at + int64_t(j) * b_ld_bytes); };

  int64_t row = starts[team].row;  // rows from it up to begin's are empty: walked below
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
    TSR_CHECK(g == 4 || g == 8, kWho, ": g = ", g, " must be 4 or 8");
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
    const auto kernel = g == 8 ? spmm_csr_nnz_split_kernel<V, I, 8> : spmm_csr_nnz_split_kernel<V, I, 4>;
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
    auto* starts = static_cast<TeamStart*>(ctx.workspace(size_t(teams + 1) * sizeof(TeamStart)));
    nnz_split_starts_kernel<I><<<grid_for(a.rows, kThreads), kThreads, 0, stream>>>(
        a.indptr, a.rows, a.nnz, count_rows, per_team, teams, starts);
    TSR_CUDA_CHECK_LAUNCH(kWho);
    const dim3 grid(unsigned((teams + kThreads / kTeamLanes - 1) / (kThreads / kTeamLanes)), unsigned(tiles));
    kernel<<<grid, kThreads, 0, stream>>>(a, b, c, alpha, beta != 0.0f, starts, teams);
    TSR_CUDA_CHECK_LAUNCH(kWho);
  }
}

#define TSR_INSTANTIATE_SPMM_NNZ_SPLIT(V, I)                                                     \
  template void spmm_csr_nnz_split(Context&, const CsrView<V, I>&, DenseView<const V>, DenseView<float>, \
                                   float, float, int, int64_t, bool);
TSR_FOR_EACH_COMPUTE_TYPE(TSR_INSTANTIATE_SPMM_NNZ_SPLIT)

}  // namespace tessera::ops::cuda
