// CSR SpMM on the GPU for 16-bit values, schedule csr.nnz_split: the merge path of row ends and
// nonzeros (as csr.merge_path splits it) cut into equal stretches of ept items, each run by a
// team of 4 lanes (8 features a lane: a 32-feature tile, one 64-byte row of B a gather), g
// gathers a team in flight; ept = 0 makes as many stretches as the GPU holds teams at once (one
// wave). queue = 1: a wave of teams takes the stretches from a counter, so a slow stretch (a
// graph's hub region) delays one team rather than a block's share of a fixed assignment.
// Made for bf16 / f16 at F = 32 on large graphs, where the gather rate, not bytes, sets the time
// (bench/RESULTS.md, "bf16 at F = 32, the bare gather"): the team's loop is the merge path's
// without its chunk of entries loaded ahead, in fewer registers, so more rows are in flight per
// multiprocessor (bf16 1.51x our f32 on reddit-like against the merge path's 1.25x at ept =
// 512). Counting row ends as items bounds the rows a team walks: split by nonzeros alone, R-MAT
// in its own vertex order gave some teams thousands of empty rows to walk (RESULTS.md,
// "csr.nnz_split made deterministic"). The default for 16-bit values at F = 32 on large graphs.
//
// Invariants:
// - A pre-pass (path_starts_kernel: a binary search, one thread a stretch) writes each stretch's
//   start: (start_row[t], start_nnz[t]) = (rows ended, nonzeros consumed) before item t * ept;
//   entry `stretches` is (rows, nnz).
// - The team running stretch t stores, with plain 16-byte stores of alpha * sum + beta * C,
//   exactly the rows that end on it, [start_row[t], start_row[t + 1]): every row of C is stored
//   once.
// - Its partial sum of the row stretch t leaves unfinished, start_row[t + 1] (when < rows), goes
//   to carry[t] (zeros when the stretch holds none of that row's nonzeros). After the main kernel
//   stored the row, a later kernel adds each row's carries into C in a fixed order (a hub row's
//   long chain by whole pieces of 64 stretches, summed first by a kernel of their own). No
//   atomics, and nothing depends on which team ran which stretch: the same bits on every run.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <type_traits>

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

// Stretch `stretch` of the path, by the 4 lanes of a team.
template <class V, class I, int G>
__device__ __forceinline__ void run_stretch(const CsrView<V, I>& a, const DenseView<const V>& b,
                                            const DenseView<float>& c, float alpha, float beta,
                                            const int64_t* start_row, const int64_t* start_nnz,
                                            float* carry, int64_t stretch, int lane, unsigned mask) {
  static_assert(G % kTeamLanes == 0, "a batch is G / 4 nonzeros a lane");
  const int64_t begin = start_nnz[stretch], end = start_nnz[stretch + 1];
  const int64_t last_row = start_row[stretch + 1];  // the row left unfinished (rows: none)
  const int64_t f = int64_t(blockIdx.y) * kTileFeatures + lane * kLaneFeatures;
  const char* b_at = reinterpret_cast<const char*>(b.data + f);
  const int64_t b_ld_bytes = b.ld * int64_t(sizeof(V));
  const auto b_row = [&](I j) { return reinterpret_cast<const V*>(b_at + int64_t(j) * b_ld_bytes); };

  int64_t row = start_row[stretch];
  int64_t row_end = row < last_row ? int64_t(a.indptr[row + 1]) : INT64_MAX;
  float acc[kLaneFeatures] = {};
  // Stores the current row (it ends on this stretch: row < last_row) and moves to the next.
  const auto finish_row = [&] {
    float* out = c.data + row * c.ld + f;
    float4 lo = make_float4(0.f, 0.f, 0.f, 0.f), hi = lo;
    if (beta != 0.0f) lo = reinterpret_cast<const float4*>(out)[0], hi = reinterpret_cast<const float4*>(out)[1];
    lo = make_float4(alpha * acc[0] + beta * lo.x, alpha * acc[1] + beta * lo.y, alpha * acc[2] + beta * lo.z,
                     alpha * acc[3] + beta * lo.w);
    hi = make_float4(alpha * acc[4] + beta * hi.x, alpha * acc[5] + beta * hi.y, alpha * acc[6] + beta * hi.z,
                     alpha * acc[7] + beta * hi.w);
    reinterpret_cast<float4*>(out)[0] = lo;
    reinterpret_cast<float4*>(out)[1] = hi;
#pragma unroll
    for (int i = 0; i < kLaneFeatures; ++i) acc[i] = 0.0f;
    ++row;
    row_end = row < last_row ? int64_t(a.indptr[row + 1]) : INT64_MAX;  // last_row's end is not ours
  };
  const auto add = [&](const PackedVec<kLaneFeatures, V>& x, float v) {
#pragma unroll
    for (int i = 0; i < kLaneFeatures; ++i) acc[i] += v * x(i);
  };

  // A batch of G nonzeros from e: lane l loads nonzeros l, l + 4, ... of it, the team shares them
  // by shuffles. The stretch's last batch may hold fewer (kPartial: its empty slots load and
  // gather nothing); it has a copy of its own so the full batches' loop keeps its registers.
  const auto batch = [&](int64_t e, auto partial) {
    constexpr bool kPartial = decltype(partial)::value;
    const int64_t left = kPartial ? end - e : G;
    I my_col[G / kTeamLanes];
    float my_val[G / kTeamLanes];
#pragma unroll
    for (int q = 0; q < G / kTeamLanes; ++q) {
      const int64_t k = e + q * kTeamLanes + lane;
      my_col[q] = !kPartial || k < end ? a.indices[k] : I(0);
      my_val[q] = !kPartial || k < end ? load_f32(a.values[k]) : 0.0f;
    }
    PackedVec<kLaneFeatures, V> x[G];
    float v[G];
#pragma unroll
    for (int g = 0; g < G; ++g) {
      const I j = __shfl_sync(mask, my_col[g / kTeamLanes], g % kTeamLanes, kTeamLanes);
      v[g] = __shfl_sync(mask, my_val[g / kTeamLanes], g % kTeamLanes, kTeamLanes);
      if (!kPartial || g < left) {
        x[g].load_read_only(b_row(j));
      } else {
        x[g].set_zero();
      }
    }
    if (!kPartial && e + G <= row_end) {  // no row ends among these G nonzeros (the common case)
#pragma unroll
      for (int g = 0; g < G; ++g) add(x[g], v[g]);
    } else {
#pragma unroll
      for (int g = 0; g < G; ++g) {
        if (!kPartial || g < left) {
          while (e + g >= row_end) finish_row();
          add(x[g], v[g]);
        }
      }
    }
  };
  int64_t e = begin;
  for (; e + G <= end; e += G) batch(e, std::false_type{});
  if (e < end) batch(e, std::true_type{});
  while (row < last_row) finish_row();  // rows that end after the stretch's last nonzero (empty ones)
  if (last_row < a.rows) {  // the partial sum of the row left unfinished (zero if none of it is ours)
    float* out = carry + stretch * c.cols + f;
    reinterpret_cast<float4*>(out)[0] = make_float4(acc[0], acc[1], acc[2], acc[3]);
    reinterpret_cast<float4*>(out)[1] = make_float4(acc[4], acc[5], acc[6], acc[7]);
  }
}

// queue == nullptr: team t of the grid runs stretch t. Otherwise the grid is a wave of teams:
// team t runs stretch t, then the stretches queue[blockIdx.y] hands out after the wave's first
// (balanced at run time; the pre-pass set it to 0). Either way a stretch's sums do not depend on
// which team runs it.
template <class V, class I, int G>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSm)
    spmm_csr_nnz_split_kernel(CsrView<V, I> a, DenseView<const V> b, DenseView<float> c, float alpha,
                              float beta, const int64_t* start_row, const int64_t* start_nnz,
                              float* carry, int64_t stretches, unsigned long long* queue) {
  const int lane = threadIdx.x % kTeamLanes;
  const unsigned mask = 0xfu << (threadIdx.x % kWarp / kTeamLanes * kTeamLanes);
  int64_t stretch = (int64_t(blockIdx.x) * kThreads + threadIdx.x) / kTeamLanes;
  const int64_t wave = int64_t(gridDim.x) * (kThreads / kTeamLanes);
  while (stretch < stretches) {  // whole teams leave together
    run_stretch<V, I, G>(a, b, c, alpha, beta, start_row, start_nnz, carry, stretch, lane, mask);
    if (queue == nullptr) return;
    unsigned long long next = 0;
    if (lane == 0) next = atomicAdd(queue + blockIdx.y, 1ull);
    stretch = wave + int64_t(__shfl_sync(mask, next, 0, kTeamLanes));
  }
}

// The carries' kernels: 4 lanes per stretch as in the main kernel (8 features a lane, blockIdx.y
// the tile); a warp is 8 slices of 4 lanes when it sums one chain.
constexpr int kSlices = kWarp / kTeamLanes;
constexpr int64_t kLongChain = 8;  // chains longer than this are summed by a whole warp
constexpr int64_t kPiece = 64;     // stretches a piece: whole pieces of a long chain are summed first

__device__ __forceinline__ void add_into(float4& s, float4 x) {
  s = make_float4(s.x + x.x, s.y + x.y, s.z + x.z, s.w + x.w);
}

// Adds the 8 slices' sums of a warp in a fixed tree (slices s and s ^ k pair up): every slice ends
// with the total, the same bits on every run.
__device__ __forceinline__ void add_slices(float4& lo, float4& hi) {
  for (int offset = kTeamLanes; offset < kWarp; offset *= 2) {
    const auto pair = [&](float4& v) {
      const auto other = [&](float x) { return __shfl_xor_sync(0xffffffffu, x, offset); };
      v = make_float4(v.x + other(v.x), v.y + other(v.y), v.z + other(v.z), v.w + other(v.w));
    };
    pair(lo);
    pair(hi);
  }
}

// The sums of whole pieces of long chains, a warp a piece q (stretches [q * kPiece, (q + 1) *
// kPiece)): where every stretch of the piece leaves the same row unfinished (the piece lies inside
// one chain), piece_sum[q] = its carries, slice s summing stretches s, s + 8, ... in order, then
// add_slices. Other pieces are not written: a chain reads only the pieces it wholly holds.
__global__ void __launch_bounds__(kThreads)
    nnz_split_piece_sums_kernel(const int64_t* start_row, int64_t rows, int64_t pieces, const float* carry,
                                int64_t cols, float* piece_sum) {
  const int64_t q = (int64_t(blockIdx.x) * kThreads + threadIdx.x) / kWarp;
  if (q >= pieces) return;  // a whole warp: q is the warp's
  const int64_t t0 = q * kPiece, r = start_row[t0 + 1];
  if (r >= rows || start_row[t0 + kPiece] != r) return;  // start_row is nondecreasing
  const int lane = threadIdx.x % kTeamLanes, slice = threadIdx.x % kWarp / kTeamLanes;
  const int64_t at = int64_t(blockIdx.y) * kTileFeatures + lane * kLaneFeatures;
  float4 lo = make_float4(0.f, 0.f, 0.f, 0.f), hi = lo;
#pragma unroll
  for (int64_t t = t0 + slice; t < t0 + kPiece; t += kSlices) {
    const float4* p = reinterpret_cast<const float4*>(carry + t * cols + at);
    add_into(lo, p[0]);
    add_into(hi, p[1]);
  }
  add_slices(lo, hi);
  if (slice == 0) {
    float4* out = reinterpret_cast<float4*>(piece_sum + q * cols + at);
    out[0] = lo;
    out[1] = hi;
  }
}

// A group of 4 lanes per stretch t adds the carries of the row stretch t leaves unfinished, r =
// start_row[t + 1], when t is the first stretch carrying r: those of stretches t, t + 1, ... while
// they leave r unfinished. Most chains are one stretch long and their group sums them in order. A
// hub row's chain is hundreds or thousands of stretches: the whole warp takes it (8 slices of 4
// lanes, slice s summing items s, s + 8, ... of the chain in order, then add_slices), where the
// chain's items are its carries before its first whole piece, the whole pieces' sums
// (nnz_split_piece_sums_kernel), then its carries after them. Either way the order is fixed: the
// same bits on every run.
__global__ void __launch_bounds__(kThreads)
    nnz_split_carries_kernel(const int64_t* start_row, int64_t rows, int64_t stretches, const float* carry,
                             const float* piece_sum, DenseView<float> c, float alpha) {
  const int lane = threadIdx.x % kTeamLanes;
  const int64_t first = (int64_t(blockIdx.x) * kThreads + threadIdx.x) / kTeamLanes;
  // No early returns: the warp meets at the ballot below.
  int64_t r = first < stretches ? start_row[first + 1] : rows;
  const bool head = r < rows && !(first > 0 && start_row[first] == r);  // the chain's first stretch
  const int64_t last = head ? carry_chain_end(start_row, stretches, first, r) : first + 1;  // first..last-1
  const int64_t tile = int64_t(blockIdx.y) * kTileFeatures;
  const auto carry_of = [&](int64_t t, int l) {
    return reinterpret_cast<const float4*>(carry + t * c.cols + tile + l * kLaneFeatures);
  };
  const auto piece_of = [&](int64_t q, int l) {
    return reinterpret_cast<const float4*>(piece_sum + q * c.cols + tile + l * kLaneFeatures);
  };
  const auto store = [&](int64_t row, int l, float4 lo, float4 hi) {
    float4* out = reinterpret_cast<float4*>(c.data + row * c.ld + tile + l * kLaneFeatures);
    const float4 o0 = out[0], o1 = out[1];
    out[0] = make_float4(o0.x + alpha * lo.x, o0.y + alpha * lo.y, o0.z + alpha * lo.z, o0.w + alpha * lo.w);
    out[1] = make_float4(o1.x + alpha * hi.x, o1.y + alpha * hi.y, o1.z + alpha * hi.z, o1.w + alpha * hi.w);
  };
  if (head && last - first <= kLongChain) {
    float4 lo = make_float4(0.f, 0.f, 0.f, 0.f), hi = lo;
    for (int64_t t = first; t < last; ++t) {
      add_into(lo, carry_of(t, lane)[0]);
      add_into(hi, carry_of(t, lane)[1]);
    }
    store(r, lane, lo, hi);
  }
  unsigned long_heads = __ballot_sync(0xffffffffu, head && last - first > kLongChain && lane == 0);
  const int slice = threadIdx.x % kWarp / kTeamLanes;
  while (long_heads) {
    const int leader = __ffs(long_heads) - 1;  // lane 0 of the head's group
    long_heads &= long_heads - 1;
    const int64_t t0 = __shfl_sync(0xffffffffu, first, leader), t1 = __shfl_sync(0xffffffffu, last, leader);
    const int64_t row = __shfl_sync(0xffffffffu, r, leader);
    // The chain's items: carries [t0, q0 * kPiece), pieces [q0, q1), carries [q1 * kPiece, t1).
    const int64_t q0 = (t0 + kPiece - 1) / kPiece, q1 = t1 / kPiece;
    const bool has_pieces = q0 < q1;
    const int64_t before = has_pieces ? q0 * kPiece - t0 : t1 - t0, whole = has_pieces ? q1 - q0 : 0;
    const int64_t items = has_pieces ? before + whole + (t1 - q1 * kPiece) : before;
    float4 lo = make_float4(0.f, 0.f, 0.f, 0.f), hi = lo;
#pragma unroll 4
    for (int64_t i = slice; i < items; i += kSlices) {
      const float4* p = i < before           ? carry_of(t0 + i, lane)
                        : i < before + whole ? piece_of(q0 + i - before, lane)
                                             : carry_of(q1 * kPiece + (i - before - whole), lane);
      add_into(lo, p[0]);
      add_into(hi, p[1]);
    }
    add_slices(lo, hi);
    if (slice == 0) store(row, lane, lo, hi);
  }
}

}  // namespace

template <class V, class I>
void spmm_csr_nnz_split(Context& ctx, const CsrView<V, I>& a, DenseView<const V> b, DenseView<float> c,
                        float alpha, float beta, int g, int64_t ept, bool queue) {
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
    if (a.nnz == 0) {  // C = beta * C (zeroed, unread, when beta == 0)
      if (beta != 1.0f) scale_rows(ctx, c, beta);
      return;
    }
    const auto stream = static_cast<cudaStream_t>(ctx.stream());
    const auto kernel = g == 8 ? spmm_csr_nnz_split_kernel<V, I, 8> : spmm_csr_nnz_split_kernel<V, I, 4>;
    const int64_t items = a.rows + a.nnz;  // the merge path: row ends and nonzeros
    // The blocks the GPU holds at once, shared among the tiles (a wave).
    int device = 0, sms = 0, per_sm = 0;
    TSR_CUDA_CHECK(cudaGetDevice(&device));
    TSR_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    TSR_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0));
    const int64_t wave_blocks = std::max<int64_t>(1, int64_t(sms) * std::max(per_sm, 1) / tiles);
    int64_t per_stretch = ept;
    if (per_stretch == 0) {  // one wave
      const int64_t wave = std::min(wave_blocks * (kThreads / kTeamLanes), items);
      per_stretch = (items + wave - 1) / wave;
    }
    const int64_t stretches = (items + per_stretch - 1) / per_stretch;
    TSR_CHECK((stretches + kThreads / kTeamLanes - 1) / (kThreads / kTeamLanes) <= INT32_MAX, kWho, ": ept = ",
              per_stretch, " makes ", stretches, " stretches, more than one launch holds; raise ept");
    // Workspace: stretch starts (stretches + 1 rows, then as many nonzero counts), the queues (one
    // a tile), a carry a stretch, then a sum a whole piece of stretches.
    const int64_t pieces = stretches / kPiece;
    const auto padded = [](size_t bytes) { return (bytes + 255) / 256 * 256; };
    const size_t starts_bytes = padded(size_t(stretches + 1) * sizeof(int64_t));
    const size_t queue_bytes = padded(size_t(tiles) * sizeof(unsigned long long));
    const size_t carry_bytes = padded(size_t(stretches) * size_t(c.cols) * sizeof(float));
    auto* base = static_cast<unsigned char*>(ctx.workspace(2 * starts_bytes + queue_bytes + carry_bytes +
                                                           size_t(pieces) * size_t(c.cols) * sizeof(float)));
    auto* start_row = reinterpret_cast<int64_t*>(base);
    auto* start_nnz = reinterpret_cast<int64_t*>(base + starts_bytes);
    auto* queues = queue ? reinterpret_cast<unsigned long long*>(base + 2 * starts_bytes) : nullptr;
    auto* carry = reinterpret_cast<float*>(base + 2 * starts_bytes + queue_bytes);
    auto* piece_sum = reinterpret_cast<float*>(base + 2 * starts_bytes + queue_bytes + carry_bytes);
    path_starts_kernel<I><<<grid_for(std::max(stretches + 1, tiles), kThreads), kThreads, 0, stream>>>(
        a.indptr, a.rows, a.nnz, per_stretch, stretches, start_row, start_nnz, queues, tiles);
    TSR_CUDA_CHECK_LAUNCH(kWho);
    const int64_t blocks = (stretches + kThreads / kTeamLanes - 1) / (kThreads / kTeamLanes);
    const dim3 grid(unsigned(queue ? std::min(blocks, wave_blocks) : blocks), unsigned(tiles));
    kernel<<<grid, kThreads, 0, stream>>>(a, b, c, alpha, beta, start_row, start_nnz, carry, stretches, queues);
    TSR_CUDA_CHECK_LAUNCH(kWho);
    if (pieces > 0) {
      const dim3 pieces_grid{grid_for(pieces, kThreads / kWarp), unsigned(tiles)};
      nnz_split_piece_sums_kernel<<<pieces_grid, kThreads, 0, stream>>>(start_row, a.rows, pieces, carry,
                                                                        c.cols, piece_sum);
      TSR_CUDA_CHECK_LAUNCH("spmm_csr_nnz_split (pieces)");
    }
    const dim3 carries_grid{unsigned(blocks), unsigned(tiles)};
    nnz_split_carries_kernel<<<carries_grid, kThreads, 0, stream>>>(start_row, a.rows, stretches, carry,
                                                                      piece_sum, c, alpha);
    TSR_CUDA_CHECK_LAUNCH("spmm_csr_nnz_split (carries)");
  }
}

#define TSR_INSTANTIATE_SPMM_NNZ_SPLIT(V, I)                                                     \
  template void spmm_csr_nnz_split(Context&, const CsrView<V, I>&, DenseView<const V>, DenseView<float>, \
                                   float, float, int, int64_t, bool);
TSR_FOR_EACH_COMPUTE_TYPE(TSR_INSTANTIATE_SPMM_NNZ_SPLIT)

}  // namespace tessera::ops::cuda
