// ops::kmeans on the GPU. Stages of one Lloyd iteration, each one launch over the whole batch:
//   assign      fused tensor-core scores x.c - ||c||^2 / 2 + running argmax (no N x K buffer),
//               per-tile inertia and changed-label counts: assign_wgmma_kernel on sm_90a builds
//               (warp-specialised: bulk-copy producer, warpgroup MMAs taking turns),
//               assign_kernel (mma.sync) elsewhere; both have a 3xTF32 form for exact f32
//   sort        CUB radix sort of the keys b * K + label, 16-bit while B * K <= 65536, or of the
//               labels alone where that saves a pass (K <= 256; stable: points stay in index
//               order, so each cluster's points are one segment either way)
//   bounds      segment offsets read off the sorted keys, chunks of kChunk points per segment,
//               scan
//   sum_chunks  a warp sums one chunk's rows in point order into a partial (f32)
//   finalize    a block per cluster sums its partials in order (f64), divides, writes the
//               centroid
//   reseed      (policy reseed_farthest) empty clusters take the farthest points
//   table       centroids rounded to the tensor-core type, with their halved squared norms
//   converge    per-problem inertia in a fixed order; a converged problem's `active` flag drops
//               and every later kernel skips it; its last block advances the iteration
// No floating-point atomics anywhere: every run gives the same bits. One iteration never waits
// for the host, so it is captured once into a CUDA graph and replayed. Initialisation by
// k-means|| (parallel_candidates) reuses the assignment kernels.
#include "ops/kmeans/kmeans_cuda.h"

#include <cuda.h>  // CUtensorMap (the type only: the encoder comes through the runtime)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>
#include <cub/device/device_select.cuh>
#include <cstdlib>
#include <limits>
#include <string>
#include <unordered_set>
#include <vector>

#include "core/cuda_check.h"
#include "core/error.h"
#include "ops/cuda_common.cuh"
#include "ops/hopper.cuh"
#include "ops/mma.cuh"

namespace tessera::ops::kmeans_cuda {

namespace {

using cuda::kWarp;
using cuda::load_f32;
using namespace cuda::mma_sync;

// ---- tiles of the fused assignment ---------------------------------------------------------

constexpr int kBM = 128;  // points per block (resident in shared memory for the whole block)
constexpr int kBN = 128;  // centroids per streamed tile
constexpr int kStages = 3;            // cp.async pipeline stages of assign_kernel
constexpr int kAssignThreads = 256;  // 8 warps: 4 along points x 2 along centroids, 32 x 64 each
constexpr int kChunk = 128;          // points per partial sum of the update
constexpr int kCheckEvery = 4;       // iterations between host looks at the convergence flag
constexpr int kThreads = 256;        // threads per block of the element- and warp-wise kernels
// Squared norms above this are refused: scores x.c - ||c||^2 / 2 must stay finite in f32 (an
// infinite offset would read as padding and leave a point without a label).
constexpr double kMaxSquaredNorm = 1e37;

// Per input type: the tensor-core element (16-bit inputs as they are; f32 rounded to tf32), the
// k-chunk of a pipeline stage and the row padding that keeps ldmatrix/LDS conflict-free.
template <class V>
struct Tile;
template <>
struct Tile<bf16> {
  using Elem = uint16_t;
  static constexpr int kBk = 64, kPad = 8;
};
template <>
struct Tile<f16> {
  using Elem = uint16_t;
  static constexpr int kBk = 64, kPad = 8;
};
template <>
struct Tile<float> {
  using Elem = float;
  static constexpr int kBk = 32, kPad = 4;
};

// A value as the tensor-core element, and that element back as f32.
template <class V>
__device__ __forceinline__ typename Tile<V>::Elem to_elem(float v) {
  if constexpr (std::is_same_v<V, bf16>) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(v));
  } else if constexpr (std::is_same_v<V, f16>) {
    return __half_as_ushort(__float2half_rn(v));
  } else {
    return round_tf32(v);
  }
}
template <class V>
__device__ __forceinline__ float elem_f32(typename Tile<V>::Elem e) {
  if constexpr (std::is_same_v<V, bf16>) {
    return __uint_as_float(uint32_t(e) << 16);
  } else if constexpr (std::is_same_v<V, f16>) {
    return __half2float(__ushort_as_half(e));
  } else {
    return e;
  }
}
// An input element as the tensor-core element (exact for 16-bit inputs; f32 rounded to tf32
// unless kTf32 is off: the exact-f32 kernel splits it itself).
template <class V, bool kTf32 = true>
__device__ __forceinline__ typename Tile<V>::Elem input_elem(V v) {
  if constexpr (std::is_same_v<V, float>) {
    return kTf32 ? round_tf32(v) : v;
  } else {
    return v.bits;
  }
}

enum MetricCode : int { kL2 = 0, kCosine = 1, kInnerProduct = 2 };

constexpr int kKeySlotBits = 5;  // assign_wgmma_kernel's score keys: 32 column slots a thread
constexpr int kNormLanes = 4;    // point_norms_kernel's lanes a point

struct AssignArgs {
  int64_t n = 0, ld = 0, batch_stride = 0;
  int d = 0, k = 0, k_pad = 0, d_pad = 0, tiles = 0, batch = 0;
  bool vector_loads = false;  // 16-byte loads of X rows (aligned, D and ld multiples)
  // assign_wgmma_kernel, 16-bit rows: the point tile arrives by tensor-map copies (the kernel's
  // row_map parameter) rather than per-thread cp.async.
  bool tensor_rows = false;
  int metric = kL2;
  // [B * n]: ||x||^2 (l2), 1/||x|| (cosine), unused (ip); written only by the kNorms form.
  float* x_norms = nullptr;
  const void* table = nullptr;     // Elem [B][k_pad][d_pad]
  const float* c_half = nullptr;   // [B][k_pad]: ||c||^2 / 2 (l2) or 0; +inf on padding
  const int* active = nullptr;     // [B] or null (every problem)
  int32_t* labels = nullptr;       // [B * n]; read first when tile_changed is set
  float* distances = nullptr;      // [B * n] or null
  // [B * n]: b * k + label, or null; uint16_t when short_sort_keys (B * k <= 65536: the update's
  // radix sort then moves 6 bytes a point per pass instead of 8), else int32_t.
  void* sort_keys = nullptr;
  bool short_sort_keys = false;
  bool label_sort_keys = false;  // the keys are the labels alone (label-major slots, below)
  double* tile_inertia = nullptr;  // [B * tiles] or null
  int* tile_changed = nullptr;     // [B * tiles] or null
  // assign_wgmma_kernel: block i's producer warp prefetches block i + prefetch_ahead's point rows
  // into L2 (about one wave of resident blocks ahead; 0: none). Needs vector_loads.
  int prefetch_ahead = 0;
  // assign_wgmma_kernel<..., kKeys>: the mask that clears a score key's slot bits (kKeySlotBits).
  // Passed at run time on purpose: as an immediate, ptxas packs each key with two instructions
  // instead of one.
  uint32_t key_mask = ~((1u << kKeySlotBits) - 1);
  // assign_wgmma_kernel<..., kNorms>: ||x||^2 computed from the point tile into x_norms, and
  // point_norms_kernel's checks flagged in check_flags ([0]: the first non-finite element, [4]:
  // the first point with a squared norm over kMaxSquaredNorm).
  unsigned long long* check_flags = nullptr;
};

// v = hi + lo + O(2^-22 |v|) with hi and lo both tf32 (3xTF32: a product of two such sums,
// less its lo * lo term, keeps about f32's precision).
__device__ __forceinline__ void split_tf32(float v, uint32_t& hi, uint32_t& lo) {
  const float h = round_tf32(v);
  hi = __float_as_uint(h);
  lo = __float_as_uint(round_tf32(v - h));
}

// One k-chunk of the 128 x 128 tile: X_s rows against the centroid rows of Cb. kExact (f32
// only): X_s and Cb hold unrounded f32, and each product is hi*hi + hi*lo + lo*hi of their tf32
// splits, three MMAs instead of one. kRoundA (f32, not exact): X_s holds unrounded f32 (the
// streamed point chunks of the wide kernel), rounded to tf32 here.
template <class V, bool kExact = false, bool kRoundA = false>
__device__ __forceinline__ void mma_chunk(const typename Tile<V>::Elem* X_s, int xs, int k0,
                                          const typename Tile<V>::Elem* Cb, int wm, int wn,
                                          int lane, float (&acc)[2][8][4]) {
  using T = Tile<V>;
  constexpr int cs = T::kBk + T::kPad;
  static_assert(!kExact || std::is_same_v<V, float>, "the exact split is for f32 inputs");
  if constexpr (kExact) {
    const int g = lane / 4, t = lane % 4;
#pragma unroll
    for (int ks = 0; ks < T::kBk / 8; ++ks) {
      uint32_t a_hi[2][4], a_lo[2][4];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        const float* p = X_s + (wm * 32 + mt * 16 + g) * xs + k0 + ks * 8 + t;
        split_tf32(p[0], a_hi[mt][0], a_lo[mt][0]);
        split_tf32(p[8 * xs], a_hi[mt][1], a_lo[mt][1]);
        split_tf32(p[4], a_hi[mt][2], a_lo[mt][2]);
        split_tf32(p[8 * xs + 4], a_hi[mt][3], a_lo[mt][3]);
      }
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
        const float* p = Cb + (wn * 64 + nt * 8 + g) * cs + ks * 8 + t;
        uint32_t b_hi0, b_lo0, b_hi1, b_lo1;
        split_tf32(p[0], b_hi0, b_lo0);
        split_tf32(p[4], b_hi1, b_lo1);
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {  // the small terms first
          mma<V>(acc[mt][nt], a_lo[mt], b_hi0, b_hi1);
          mma<V>(acc[mt][nt], a_hi[mt], b_lo0, b_lo1);
          mma<V>(acc[mt][nt], a_hi[mt], b_hi0, b_hi1);
        }
      }
    }
  } else if constexpr (std::is_same_v<V, float>) {
    const int g = lane / 4, t = lane % 4;
#pragma unroll
    for (int ks = 0; ks < T::kBk / 8; ++ks) {
      uint32_t af[2][4];
      auto a_bits = [](float v) { return __float_as_uint(kRoundA ? round_tf32(v) : v); };
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        const float* p = X_s + (wm * 32 + mt * 16 + g) * xs + k0 + ks * 8 + t;
        af[mt][0] = a_bits(p[0]);
        af[mt][1] = a_bits(p[8 * xs]);
        af[mt][2] = a_bits(p[4]);
        af[mt][3] = a_bits(p[8 * xs + 4]);
      }
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
        const float* p = Cb + (wn * 64 + nt * 8 + g) * cs + ks * 8 + t;
        const uint32_t b0 = __float_as_uint(p[0]), b1 = __float_as_uint(p[4]);
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) mma<V>(acc[mt][nt], af[mt], b0, b1);
      }
    }
  } else {
#pragma unroll
    for (int ks = 0; ks < T::kBk / 16; ++ks) {
      uint32_t af[2][4];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        ldmatrix_x4(af[mt], X_s + (wm * 32 + mt * 16 + lane % 16) * xs + k0 + ks * 16 +
                                (lane / 16) * 8);
      }
#pragma unroll
      for (int np = 0; np < 4; ++np) {
        uint32_t bf[4];
        ldmatrix_x4(bf, Cb + (wn * 64 + np * 16 + lane % 8 + (lane / 16) * 8) * cs + ks * 16 +
                            ((lane / 8) % 2) * 8);
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          mma<V>(acc[mt][2 * np], af[mt], bf[0], bf[1]);
          mma<V>(acc[mt][2 * np + 1], af[mt], bf[2], bf[3]);
        }
      }
    }
  }
}

// Point g's sort key (AssignArgs::sort_keys set).
__device__ __forceinline__ void store_sort_key(const AssignArgs& a, int64_t g, int b, int label) {
  const int key = a.label_sort_keys ? label : b * a.k + label;
  if (a.short_sort_keys) {
    static_cast<uint16_t*>(a.sort_keys)[g] = uint16_t(key);
  } else {
    static_cast<int32_t*>(a.sort_keys)[g] = key;
  }
}

// (score, index) a is better than b: larger score, ties to the lower index.
__device__ __forceinline__ bool better(float av, int ai, float bv, int bi) {
  return av > bv || (av == bv && ai < bi);
}

__device__ __forceinline__ double warp_sum_f64(double v) {
#pragma unroll
  for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}
__device__ __forceinline__ int warp_sum_i32(int v) {
#pragma unroll
  for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// The end of an assignment block, all threads: row r < rows of the tile has the winning
// (score, label) in score_s[r], label_s[r]. Writes labels, distances and sort keys, and the tile's
// inertia and changed-label count (fixed-order sums).
template <int BM>
__device__ __forceinline__ void store_block_results(const AssignArgs& a, int b, int64_t row0,
                                                    int rows, const float* score_s,
                                                    const int* label_s) {
  static_assert(BM <= kAssignThreads, "a thread per row");
  __shared__ double warp_inertia[BM / kWarp];
  __shared__ int warp_changed[BM / kWarp];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  __syncthreads();  // score_s / label_s complete
  if (threadIdx.x < BM) {
    const int r = threadIdx.x;
    const float score = score_s[r];
    const int label = label_s[r];
    double dist = 0;
    int changed = 0;
    if (r < rows) {
      const int64_t g = int64_t(b) * a.n + row0 + r;
      float d;
      if (a.metric == kL2) {
        d = fmaxf(0.0f, a.x_norms[g] - 2.0f * score);
      } else if (a.metric == kCosine) {
        d = fmaxf(0.0f, 1.0f - score * a.x_norms[g]);
      } else {
        d = -score;
      }
      dist = d;
      if (a.tile_changed) changed = a.labels[g] != label;
      a.labels[g] = label;
      if (a.distances) a.distances[g] = d;
      if (a.sort_keys) store_sort_key(a, g, b, label);
    }
    dist = warp_sum_f64(dist);
    changed = warp_sum_i32(changed);
    if (lane == 0) warp_inertia[warp] = dist, warp_changed[warp] = changed;
  }
  __syncthreads();
  if (threadIdx.x == 0 && a.tile_inertia) {
    double s = 0;
    int c = 0;
    for (int w = 0; w < BM / kWarp; ++w) s += warp_inertia[w], c += warp_changed[w];
    a.tile_inertia[blockIdx.x] = s;
    a.tile_changed[blockIdx.x] = c;
  }
}

// BM points from row0 of problem b (rows of them real, the rest zero) as tensor-core elements,
// zero-padded to d_pad columns, through store(r, col, 16-byte word) (vector path: kV-element
// chunks) or store_elem(r, col, element); kLoaders threads, this one number tid. kTf32: f32
// rounded to tf32 (off: kept as it is, for the exact-f32 kernel).
template <class V, int BM, int kLoaders, bool kTf32 = true, class Store16, class StoreElem>
__device__ __forceinline__ void load_point_tile(const V* __restrict__ x, const AssignArgs& a,
                                                int b, int64_t row0, int rows, int tid,
                                                Store16&& store16, StoreElem&& store_elem) {
  using E = typename Tile<V>::Elem;
  const V* xb = x + int64_t(b) * a.batch_stride + row0 * a.ld;
  if (a.vector_loads) {
    constexpr int kV = 16 / sizeof(V);
    const int per_row = a.d_pad / kV;
    for (int c = tid; c < BM * per_row; c += kLoaders) {
      const int r = c / per_row, col = (c % per_row) * kV;
      uint4 w = make_uint4(0, 0, 0, 0);
      if (r < rows && col < a.d) w = *reinterpret_cast<const uint4*>(xb + int64_t(r) * a.ld + col);
      if constexpr (std::is_same_v<V, float> && kTf32) {
        w.x = __float_as_uint(round_tf32(__uint_as_float(w.x)));
        w.y = __float_as_uint(round_tf32(__uint_as_float(w.y)));
        w.z = __float_as_uint(round_tf32(__uint_as_float(w.z)));
        w.w = __float_as_uint(round_tf32(__uint_as_float(w.w)));
      }
      store16(r, col, w);
    }
  } else {
    for (int c = tid; c < BM * a.d_pad; c += kLoaders) {
      const int r = c / a.d_pad, col = c % a.d_pad;
      store_elem(r, col,
                 (r < rows && col < a.d) ? input_elem<V, kTf32>(xb[int64_t(r) * a.ld + col]) : E(0));
    }
  }
}

// Block (b, tile): kBM points of problem b against all its centroids. The point tile is loaded
// once (converted, zero-padded to d_pad); centroid tiles stream through a kStages-deep cp.async
// pipeline of (centroid tile, k-chunk) stages. The score of centroid c is x.c - h(c) with
// h = ||c||^2 / 2 (l2) or 0: the accumulators start at -h, so the tensor cores add the dot
// products onto it, and the nearest centroid is the largest score (l2 distance = ||x||^2 -
// 2 score). Each thread keeps the best (score, index) of its four rows; padded centroids score
// -inf, so they never win; ties go to the lower index.
// Two blocks per SM (<= 128 registers a thread): 16 warps to hide the pipeline's latency.
// kExact (f32 only): the point tile and the table hold unrounded f32, split into tf32 pairs at
// each MMA (mma_chunk), for distances of f32 precision at three times the tensor-core work.
// kWide: for D too wide for a resident point tile (assign_smem_bytes), the points stream with
// the centroids instead: each stage also holds the k-chunk of the block's points (as input
// values: f32 unrounded, rounded at the MMA), reloaded for every centroid tile (from L2 mostly).
template <class V, bool kExact = false, bool kWide = false>
__global__ void __launch_bounds__(kAssignThreads, 2)
    assign_kernel(const V* __restrict__ x, const AssignArgs a) {
  using T = Tile<V>;
  using E = typename T::Elem;
  constexpr int cs = T::kBk + T::kPad;
  // A stage: the centroid chunk [kBN][cs], then (kWide) the point chunk [kBM][cs].
  constexpr int kStageElems = (kWide ? kBN + kBM : kBN) * cs;
  const int b = int(blockIdx.x / unsigned(a.tiles));
  const int tile = int(blockIdx.x % unsigned(a.tiles));
  if (a.active && !a.active[b]) return;
  extern __shared__ __align__(16) unsigned char smem[];
  const int xs = kWide ? cs : a.d_pad + T::kPad;
  E* X_s = reinterpret_cast<E*>(smem);              // the resident point tile (not kWide)
  E* C_s = kWide ? X_s : X_s + kBM * xs;            // [kStages][kStageElems]
  const E* table = static_cast<const E*>(a.table) + int64_t(b) * a.k_pad * a.d_pad;
  const int nk = a.d_pad / T::kBk;
  const int total = (a.k_pad / kBN) * nk;
  const int64_t row0 = int64_t(tile) * kBM;
  const int rows = a.n - row0 < kBM ? int(a.n - row0) : kBM;
  constexpr int kPerChunk = 16 / sizeof(E);
  constexpr int kChunksPerRow = T::kBk / kPerChunk;

  auto load_stage = [&](int s) {
    const int j = s / nk, kc = s % nk;
    E* dst = C_s + (s % kStages) * kStageElems;
    const E* src = table + int64_t(j) * kBN * a.d_pad + kc * T::kBk;
    for (int c = threadIdx.x; c < kBN * kChunksPerRow; c += kAssignThreads) {
      const int r = c / kChunksPerRow, q = c % kChunksPerRow;
      cp_async16(dst + r * cs + q * kPerChunk, src + int64_t(r) * a.d_pad + q * kPerChunk);
    }
    if constexpr (kWide) {  // the points' columns [kc * kBk, + kBk), zero past rows and d
      E* xdst = dst + kBN * cs;
      const V* xb = x + int64_t(b) * a.batch_stride + row0 * a.ld;
      const int col0 = kc * T::kBk;
      if (a.vector_loads) {  // d a multiple of kPerChunk: a chunk is all in or all out
        for (int c = threadIdx.x; c < kBM * kChunksPerRow; c += kAssignThreads) {
          const int r = c / kChunksPerRow, col = col0 + (c % kChunksPerRow) * kPerChunk;
          const bool in = r < rows && col < a.d;
          cp_async16_zfill(xdst + r * cs + (col - col0), in ? xb + int64_t(r) * a.ld + col : xb,
                           in);
        }
      } else {
        for (int c = threadIdx.x; c < kBM * T::kBk; c += kAssignThreads) {
          const int r = c / T::kBk, col = col0 + c % T::kBk;
          xdst[r * cs + (col - col0)] =
              r < rows && col < a.d ? input_elem<V, false>(xb[int64_t(r) * a.ld + col]) : E(0);
        }
      }
    }
  };
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < total) load_stage(s);
    cp_async_commit();
  }

  // The point tile, converted and zero-padded (overlaps the first centroid stages in flight).
  if constexpr (!kWide) {
    load_point_tile<V, kBM, kAssignThreads, !kExact>(
        x, a, b, row0, rows, threadIdx.x,
        [&](int r, int col, uint4 w) { *reinterpret_cast<uint4*>(X_s + r * xs + col) = w; },
        [&](int r, int col, E e) { X_s[r * xs + col] = e; });
  }

  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int wm = warp % 4, wn = warp / 4;
  const float* c_half = a.c_half + int64_t(b) * a.k_pad;
  const int n_ctiles = a.k_pad / kBN;
  float acc[2][8][4];
  float best[2][2];
  int best_i[2][2];
  // Accumulators of tile j start at -h of their columns.
  auto start_tile = [&](int j) {
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
      const int col = j * kBN + wn * 64 + nt * 8 + 2 * (lane % 4);
      const float h0 = -__ldg(c_half + col), h1 = -__ldg(c_half + col + 1);
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        acc[mt][nt][0] = h0, acc[mt][nt][1] = h1, acc[mt][nt][2] = h0, acc[mt][nt][3] = h1;
      }
    }
  };
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) best[mt][h] = -INFINITY, best_i[mt][h] = INT_MAX;
  }
  start_tile(0);

  for (int s = 0; s < total; ++s) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // stage s landed for everyone; stage s - 1's buffer is free
    if (s + kStages - 1 < total) load_stage(s + kStages - 1);
    cp_async_commit();
    const int kc = s % nk;
    const E* stage = C_s + (s % kStages) * kStageElems;
    if constexpr (kWide) {
      mma_chunk<V, kExact, std::is_same_v<V, float> && !kExact>(stage + kBN * cs, cs, 0, stage,
                                                                 wm, wn, lane, acc);
    } else {
      mma_chunk<V, kExact>(X_s, xs, kc * T::kBk, stage, wm, wn, lane, acc);
    }
    if (kc == nk - 1) {  // tile j done: fold into the running argmax, columns in rising order
      const int j = s / nk;
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
        const int col = j * kBN + wn * 64 + nt * 8 + 2 * (lane % 4);
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const float v0 = acc[mt][nt][2 * h], v1 = acc[mt][nt][2 * h + 1];
            if (v0 > best[mt][h]) best[mt][h] = v0, best_i[mt][h] = col;
            if (v1 > best[mt][h]) best[mt][h] = v1, best_i[mt][h] = col + 1;
          }
        }
      }
      if (j + 1 < n_ctiles) start_tile(j + 1);
    }
  }
  cp_async_wait<0>();

  // The four lanes of a quad hold the same rows: combine, then the two warps along centroids.
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
#pragma unroll
      for (int off = 1; off <= 2; off *= 2) {
        const float ov = __shfl_xor_sync(0xffffffffu, best[mt][h], off);
        const int oi = __shfl_xor_sync(0xffffffffu, best_i[mt][h], off);
        if (better(ov, oi, best[mt][h], best_i[mt][h])) best[mt][h] = ov, best_i[mt][h] = oi;
      }
    }
  }
  __syncthreads();  // the pipeline buffers are reused below
  float* red_v = reinterpret_cast<float*>(C_s);  // [2][kBM]
  int* red_i = reinterpret_cast<int*>(red_v + 2 * kBM);
  if (lane % 4 == 0) {
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = wm * 32 + mt * 16 + h * 8 + lane / 4;
        red_v[wn * kBM + r] = best[mt][h];
        red_i[wn * kBM + r] = best_i[mt][h];
      }
    }
  }
  __syncthreads();
  if (threadIdx.x < kBM) {  // the two warps along centroids: row r's winner into red_*[r]
    const int r = threadIdx.x;
    if (better(red_v[kBM + r], red_i[kBM + r], red_v[r], red_i[r])) {
      red_v[r] = red_v[kBM + r], red_i[r] = red_i[kBM + r];
    }
  }
  store_block_results<kBM>(a, b, row0, rows, red_v, red_i);
}

// ---- the Hopper assignment kernel (wgmma, sm_90a) -------------------------------------------
// Warp-specialised. One producer warp streams the centroid table through a ring of `stages`
// shared-memory stages on the bulk-copy engine: the table is stored in exactly the stage layout
// (table_kernel with tiled = true), so one 16 KiB copy fills a stage. Two consumer warpgroups
// each keep 64 MT points resident (128-byte swizzle) and multiply them by every stage with
// warpgroup MMAs (m64n128, both operands from shared memory). mbarriers order the ring: full[s]
// completes when stage s has landed, empty[s] when all 256 consumer threads have read it.
// The consumers take turns on the tensor cores (named barriers kTurn0 / kTurn1): one issues a
// centroid tile's MMAs while the other folds its previous tile into its running argmax, so the
// tensor cores keep working through the epilogue (FlashAttention-3's ping-pong schedule).
// Scores, padding and ties are those of assign_kernel.
// kSplit (f32 only, MT = 1; KmeansOptions::exact_f32): 3xTF32. The point tile is held twice, as
// its tf32 high parts and then its tf32 low parts, and the table streams each column block as
// two stages (the centroids' high parts, then their low parts); a k-step is three MMAs,
// lo*hi + hi*lo + hi*hi, on the same accumulators.

constexpr int kStageBytes = kBN * 128;  // a stage: one 128-byte column block of a centroid tile
constexpr int kWgmmaThreads = 288;      // two consumer warpgroups, then the producer warp
constexpr int kConsumerThreads = 256;
constexpr int kMinStages = 4, kMaxStages = 8;
enum NamedBarrier : int {
  kTurn0 = 1, kTurn1 = 2, kRowsLoaded0 = 3, kRowsLoaded1 = 4, kResults = 5
};

// True when this build holds the sm_90a kernel and the device runs it.
__global__ void wgmma_probe_kernel(int* out) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  *out = 1;
#else
  *out = 0;
#endif
}

// A distance with its low bits (clear in mask) replaced by slot: see kKeys below.
__device__ __forceinline__ int score_key(float distance, uint32_t mask, int slot) {
  return int((__float_as_uint(distance) & mask) | uint32_t(slot));
}

// ||x||^2 of a 16-bit row, as point_norms_kernel and tile_point_norms both sum it (so that a
// fit computes the same bits either way): kNormLanes lanes, lane q adding 16-byte chunks q,
// q + kNormLanes, ... element by element in f32 (one rounding an element: fmaf), then the lanes'
// sums by xor-shuffles 1 and 2. f32 and not f64: conversions to f64 run at a quarter of the f32
// rate, and in the assignment they cost about as much as the read of X they replace. Overflow
// (bf16 past 1.8e19) gives +inf: over kMaxSquaredNorm, as it should be.
__device__ __forceinline__ float norm_lane_add(float s, const float (&v)[8]) {
#pragma unroll
  for (int e = 0; e < 8; ++e) s = fmaf(v[e], v[e], s);
  return s;
}
__device__ __forceinline__ float norm_lanes_total(float s, unsigned mask) {
#pragma unroll
  for (int off = 1; off < kNormLanes; off *= 2) s += __shfl_xor_sync(mask, s, off, kNormLanes);
  return s;
}

// assign_wgmma_kernel<..., kNorms>: the squared norms of this thread's two rows (those of its
// accumulators: (warp % 4) * 16 + hh * 8 + lane / 4 of the warpgroup's, which starts at point
// row0; `rows` of them are points) from the 16-bit tile in shared memory (`at(r, col)`: the
// address of element col), a quad's four lanes summing as point_norms_kernel does (the same
// bits), and that kernel's checks: the first non-finite element, the first squared norm over
// kMaxSquaredNorm. Whole warps call it.
template <class V, class ElementAddress>
__device__ __forceinline__ void tile_point_norms(const AssignArgs& a, int b, int64_t row0,
                                                 int rows, ElementAddress at, float (&norm)[2]) {
  static_assert(sizeof(V) == 2 && kNormLanes == 4, "a quad per 16-bit row");
  constexpr int kV = 8;
  const int warp = int(threadIdx.x / kWarp) % 4, lane = int(threadIdx.x % kWarp);
#pragma unroll
  for (int hh = 0; hh < 2; ++hh) {
    const int r = warp * 16 + hh * 8 + lane / 4;
    float s = 0;
    for (int c = lane % 4; c < a.d_pad / kV; c += 4) {  // past D: zeros, which add nothing
      float v[kV];
      cuda::load_vec<kV>(reinterpret_cast<const V*>(at(r, c * kV)), v);
      s = norm_lane_add(s, v);
    }
    s = norm_lanes_total(s, 0xffffffffu);
    norm[hh] = s;
    if (lane % 4 == 0 && r < rows) {
      const int64_t g = int64_t(b) * a.n + row0 + r;
      a.x_norms[g] = s;
      if (!(s <= float(kMaxSquaredNorm))) {  // NaN, +inf or over: which one, in the pass's order
        int bad = 0;
        while (bad < a.d && isfinite(load_f32(*reinterpret_cast<const V*>(at(r, bad))))) ++bad;
        if (bad < a.d) {
          atomicMin(a.check_flags, static_cast<unsigned long long>(g) * unsigned(a.d) + bad);
        } else {
          atomicMin(a.check_flags + 4, static_cast<unsigned long long>(g));
        }
      }
    }
  }
}

// TESSERA_KMEANS_TRACE (a diagnostic build: -DCMAKE_CUDA_FLAGS=-DTESSERA_KMEANS_TRACE): each block
// of assign_wgmma_kernel writes its timeline into kTraceSlots 64-bit slots, thread 0 (slot 9 and
// 14: thread 128, warpgroup 1) at these points: 0 %smid << 32 | centroid tiles, 1 / 13 %globaltimer
// at the start / end, then clock64() at 2 the start, 3 after __syncthreads, 4 the row copies and
// loads issued, 5 the rows landed, 6 after the rows' barrier, 7 the first tile's MMAs done, 8 / 9
// the last tile's MMAs done (warpgroup 0 / 1), 10 the results stored, 11 after the results
// barrier, 12 the end, 14 warpgroup 1's rows in. The last launch's first kTraceBlocks blocks go to
// $TESSERA_KMEANS_TRACE_FILE at exit; scripts/kmeans_trace.py summarises them. (It found the
// per-thread cp.async of the point tile at a fifth of a block's time: bench/RESULTS.md.)
#ifdef TESSERA_KMEANS_TRACE
constexpr int kTraceSlots = 16;
constexpr unsigned kTraceBlocks = 1u << 19;
__device__ unsigned long long g_assign_trace[size_t(kTraceSlots) * kTraceBlocks];
__device__ __forceinline__ unsigned long long trace_global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ unsigned trace_sm() {
  unsigned s;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(s));
  return s;
}
#define KMEANS_TRACE_BY(thread, slot, value)                                          \
  if (threadIdx.x == (thread) && blockIdx.x < kTraceBlocks)                          \
  g_assign_trace[size_t(kTraceSlots) * blockIdx.x + (slot)] = (value)
#else
#define KMEANS_TRACE_BY(thread, slot, value) ((void)0)
#endif
#define KMEANS_TRACE(slot, value) KMEANS_TRACE_BY(0, slot, value)

// MT m64 sub-tiles per consumer warpgroup: BM = 128 MT points per block. MT = 2 halves the
// centroid traffic per multiply-add (one block per SM: 128 accumulators a thread); MT = 1 runs
// two blocks per SM.
// A block's fixed costs are latencies in a chain, which at K = 100 or 300 (one to three centroid
// tiles) took most of its time, so they are kept short: the rows' norms and old labels are read
// before the point tile (not after it, nor in the epilogue), 16-bit rows with 16-byte alignment
// arrive by tensor-map copies that the producer issues first (AssignArgs::tensor_rows; else by
// cp.async, all in flight at once), and each row's result is stored by the lane that holds it
// (no staging through shared memory and a block barrier). (Per-thread cp.async of the 32 KiB
// tile took about 6,000 cycles of a block's 27,000 at K = 1024 to issue, a tenth of that by the
// tensor map.)
// (Persistent blocks looping over point tiles were measured twice, 1-14% and then 1-4% slower at
// K >= 1000: the second time with the next tile's rows copied in by tensor map under the last
// one's fold, and the MMA loop's code as here once the loop skipped inactive problems by a vote;
// bench/RESULTS.md has both.)
// kNorms (a fit's first assignment, l2, 16-bit rows with 16-byte alignment, which arrive by
// tensor map or cp.async): the rows' ||x||^2 are computed
// here from the resident tile, with point_norms_kernel's checks, instead of read, saving that
// pass's read of X.
template <class V, int MT, bool kSplit = false, bool kKeys = false, bool kNorms = false>
__global__ void __launch_bounds__(kWgmmaThreads, MT == 1 && !kSplit ? 2 : 1)
    assign_wgmma_kernel(const V* __restrict__ x, const AssignArgs a, const int stages,
                        const __grid_constant__ CUtensorMap row_map) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using namespace cuda::hopper;
  using E = typename Tile<V>::Elem;
  static_assert(!kSplit || (std::is_same_v<V, float> && MT == 1), "3xTF32: f32, 128-point blocks");
  static_assert(!(kSplit && kKeys), "score keys drop bits the exact split keeps");
  static_assert(!kNorms || (!std::is_same_v<V, float> && MT == 1 && kKeys),
                "norms from the tile: 16-bit rows, 128-point blocks, score keys");
  constexpr int kParts = kSplit ? 2 : 1;  // stages (and point tiles) per column block
  constexpr int BM = 128 * MT;
  constexpr int kGroupRows = 64 * MT;    // points of one consumer warpgroup
  constexpr int kBlockBytes = BM * 128;  // one 128-byte column block of the point tile
  constexpr int kStepBytes = 32;         // one MMA k-step: 16 x 16-bit or 8 x tf32
  constexpr bool kAsyncRows = !std::is_same_v<V, float>;
  constexpr int kConsumerWarps = kConsumerThreads / kWarp;
  const int b = int(blockIdx.x / unsigned(a.tiles));
  const int tile = int(blockIdx.x % unsigned(a.tiles));
  if (a.active && !a.active[b]) return;
  KMEANS_TRACE(1, trace_global_ns());
  KMEANS_TRACE(2, clock64());
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ __align__(8) uint64_t ring_barriers[2 * kMaxStages];  // full[stages], empty[stages]
  __shared__ __align__(8) uint64_t rows_barriers[2];  // tensor_rows: a warpgroup's rows landed
  __shared__ double warp_inertia[kConsumerWarps];  // the tile's sums per consumer warp
  __shared__ int warp_changed[kConsumerWarps];
  // 1024-byte alignment for the swizzle (the launch adds 1 KiB of slack).
  unsigned char* smem = smem_raw + ((1024 - (smem_address(smem_raw) & 1023)) & 1023);
  const int nk = a.d_pad / Tile<V>::kBk;             // column blocks
  unsigned char* X_s = smem;                         // [kParts][nk][kBlockBytes]
  unsigned char* C_s = smem + kParts * nk * kBlockBytes;  // [stages][kStageBytes]
  const int n_ctiles = a.k_pad / kBN;
  // Stages streamed: (centroid tile, column block, part) in order.
  const int total = n_ctiles * nk * kParts;
  const uint32_t full0 = smem_address(ring_barriers);
  const uint32_t empty0 = full0 + 8 * stages;
  const uint32_t rows_full0 = smem_address(rows_barriers);
  const bool tensor_rows = kAsyncRows && a.tensor_rows;
  if (threadIdx.x == 0) {
    for (int s = 0; s < stages; ++s) {
      mbarrier_init(full0 + 8 * s, 1);                   // the producer's expect_tx arrival
      mbarrier_init(empty0 + 8 * s, kConsumerThreads);   // every consumer thread
    }
    mbarrier_init(rows_full0, 1);
    mbarrier_init(rows_full0 + 8, 1);
    mbarrier_init_fence();
  }
  __syncthreads();
  KMEANS_TRACE(3, clock64());

  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t row0 = int64_t(tile) * BM;
  const int rows = a.n - row0 < BM ? int(a.n - row0) : BM;
  if (warp == kConsumerWarps) {  // the producer
    if (lane == 0) {
      if (tensor_rows) {  // each warpgroup's rows, one box a column block, zeros past n and D
        for (int g = 0; g < 2; ++g) {
          mbarrier_arrive_expect_tx(rows_full0 + 8 * g, uint32_t(nk * kGroupRows * 128));
          for (int kc = 0; kc < nk; ++kc) {
            tensor_copy_3d_to_shared(smem_address(X_s) + kc * kBlockBytes + g * kGroupRows * 128,
                                     &row_map, kc * Tile<V>::kBk, int(row0) + g * kGroupRows, b,
                                     rows_full0 + 8 * g);
          }
        }
      }
      const unsigned char* src =
          static_cast<const unsigned char*>(a.table) + int64_t(b) * total * kStageBytes;
      const uint32_t c_base = smem_address(C_s);
      for (int s = 0, st = 0, phase = 0; s < total; ++s) {
        mbarrier_wait(empty0 + 8 * st, phase ^ 1);
        mbarrier_arrive_expect_tx(full0 + 8 * st, kStageBytes);
        bulk_copy_to_shared(c_base + st * kStageBytes, src + int64_t(s) * kStageBytes,
                            kStageBytes, full0 + 8 * st);
        if (++st == stages) st = 0, phase ^= 1;
      }
    } else if (a.prefetch_ahead > 0 && blockIdx.x + unsigned(a.prefetch_ahead) < gridDim.x) {
      // The other lanes: the rows of the block a wave ahead into L2, so that its point loads
      // wait on L2 rather than on DRAM (rows 16-byte aligned: vector_loads).
      const unsigned ahead = blockIdx.x + unsigned(a.prefetch_ahead);
      const int ab = int(ahead / unsigned(a.tiles)), at = int(ahead % unsigned(a.tiles));
      const int64_t arow0 = int64_t(at) * BM;
      const int arows = a.n - arow0 < BM ? int(a.n - arow0) : BM;
      const char* base =
          reinterpret_cast<const char*>(x + int64_t(ab) * a.batch_stride + arow0 * a.ld);
      const uint32_t row_bytes = uint32_t(a.d) * uint32_t(sizeof(V));
      if (a.ld == a.d) {  // one contiguous range
        if (lane == 1) bulk_prefetch_l2(base, uint32_t(arows) * row_bytes);
      } else {
        for (int r = lane - 1; r < arows; r += kWarp - 1)
          bulk_prefetch_l2(base + int64_t(r) * a.ld * int64_t(sizeof(V)), row_bytes);
      }
    }
    return;  // (the consumers' barriers below are named, for their 256 threads)
  }

  // The consumers. The warpgroup, read off lane 0 so that the compiler sees a warp-uniform
  // value: the MMA descriptors built from it then stay in uniform registers.
  const int wg = __shfl_sync(0xffffffffu, warp / 4, 0);
  const int group_row0 = wg * kGroupRows;
  constexpr int kPerBlock = Tile<V>::kBk;
  // Point (r, col) of this warpgroup's rows: its column block, then the 128-byte swizzle.
  auto point_address = [&](int r, int col) {
    return X_s + (col / kPerBlock) * kBlockBytes +
           swizzled(group_row0 + r, (col % kPerBlock) * int(sizeof(E)));
  };
  const int group_rows = max(0, min(rows - group_row0, kGroupRows));
  const bool async_rows = kAsyncRows && a.vector_loads && !tensor_rows;
  // 16-bit rows, 16-byte aligned, without the tensor map: this warpgroup's rows into its part of
  // X_s by cp.async, all in flight at once, zero past the last point and past D (waited for
  // below).
  if (async_rows) {
    const V* xb = x + int64_t(b) * a.batch_stride + (row0 + group_row0) * a.ld;
    constexpr int kV = 16 / sizeof(V);
    const int per_row = a.d_pad / kV;
    // Chunk c = r * per_row + q of this thread's, c = t, t + 128, ...: (r, q) stepped by (128 /
    // per_row, 128 % per_row) with a carry, not divided out per chunk.
    const int t = threadIdx.x % 128, dr = 128 / per_row, dq = 128 % per_row;
    for (int r = t / per_row, q = t % per_row; r < kGroupRows;) {
      const int col = q * kV;
      const bool in = r < group_rows && col < a.d;
      cp_async16_zfill(point_address(r, col), in ? xb + int64_t(r) * a.ld + col : xb, in);
      r += dr, q += dq;
      if (q >= per_row) q -= per_row, ++r;
    }
    cp_async_commit();
  }
  // Turns need a tile's stages to fit the ring: else warpgroup 0 would wait for a stage that
  // only warpgroup 1's next turn frees. Without turns the two run freely (no cycle). A tile
  // without column blocks (D = 0, refused by the callers) would never pass the turn on.
  const bool take_turns = nk > 0 && stages >= kParts * nk;
  if (take_turns && wg == 1) named_barrier_arrive(kTurn0, 256);  // warpgroup 0 goes first
  const uint32_t x_desc = smem_descriptor(smem_address(X_s) + group_row0 * 128);
  const uint32_t x_lo_step = uint32_t(nk * kBlockBytes) >> 4;  // split: high -> low parts
  const uint32_t c_desc = smem_descriptor(smem_address(C_s));
  {  // the tile
    // This thread's rows (m, hh): the quad lane % 4 == 0 of each holds the row's result. Read
    // before the points land: ||x||^2 (or 1 / ||x||) and, when changes are counted, the label.
    float x_norm[MT][2];
    int old_label[MT][2];
#pragma unroll
    for (int m = 0; m < MT; ++m) {
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        const int r = group_row0 + m * 64 + (warp % 4) * 16 + hh * 8 + lane / 4;
        const int64_t g = int64_t(b) * a.n + row0 + r;
        x_norm[m][hh] = !kNorms && r < rows && a.metric != kInnerProduct ? a.x_norms[g] : 0.0f;
        old_label[m][hh] = r < rows && a.tile_changed && lane % 4 == 0 ? a.labels[g] : -1;
      }
    }
    KMEANS_TRACE(4, clock64());
    if (tensor_rows) {
      mbarrier_wait(rows_full0 + 8 * wg, 0);
    } else if (async_rows) {
      cp_async_wait<0>();
    } else {
      // Split: the high parts at X_s, the low parts nk column blocks further on.
      load_point_tile<V, kGroupRows, 128, !kSplit>(
          x, a, b, row0 + group_row0, group_rows, threadIdx.x % 128,
          [&](int r, int col, uint4 w) {
            unsigned char* at = point_address(r, col);
            if constexpr (kSplit) {
              uint4 lo;
              split_tf32(__uint_as_float(w.x), w.x, lo.x);
              split_tf32(__uint_as_float(w.y), w.y, lo.y);
              split_tf32(__uint_as_float(w.z), w.z, lo.z);
              split_tf32(__uint_as_float(w.w), w.w, lo.w);
              *reinterpret_cast<uint4*>(at + nk * kBlockBytes) = lo;
            }
            *reinterpret_cast<uint4*>(at) = w;
          },
          [&](int r, int col, E e) {
            unsigned char* at = point_address(r, col);
            if constexpr (kSplit) {
              uint32_t hi, lo;
              split_tf32(e, hi, lo);
              *reinterpret_cast<uint32_t*>(at) = hi;
              *reinterpret_cast<uint32_t*>(at + nk * kBlockBytes) = lo;
            } else {
              *reinterpret_cast<E*>(at) = e;
            }
          });
    }
    KMEANS_TRACE(5, clock64());
    if (!tensor_rows) {
      fence_async_shared();  // st.shared / cp.async writes, visible to the tensor cores
      named_barrier_sync(kRowsLoaded0 + wg, 128);
    }
    KMEANS_TRACE(6, clock64());
    KMEANS_TRACE_BY(128, 14, clock64());
    if constexpr (kNorms) {  // before the first tile: its accumulators start at ||x||^2 / 2
      tile_point_norms<V>(a, b, row0 + group_row0, rows - group_row0, point_address, x_norm[0]);
    }

    float best[MT][2];
    int best_i[MT][2];
#pragma unroll
    for (int m = 0; m < MT; ++m) {
      best[m][0] = best[m][1] = INFINITY;  // smallest h - x.c so far
      best_i[m][0] = best_i[m][1] = INT_MAX;
    }
    // kKeys: this thread's rows' ||x||^2 / 2 (0 past the last point), the smallest score key so
    // far and the centroid tile it came from.
    float x_half[MT][2];
    int best_key[MT][2], best_tile[MT][2];
    if constexpr (kKeys) {
#pragma unroll
      for (int m = 0; m < MT; ++m) {
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
          x_half[m][hh] = 0.5f * x_norm[m][hh];
          best_key[m][hh] = INT_MAX, best_tile[m][hh] = 0;
        }
      }
    }
    // This thread's accumulator columns of a tile: 8 i + 2 (lane % 4) + {0, 1}, i < 16.
    const float* c_half = a.c_half + int64_t(b) * a.k_pad + 2 * (lane % 4);
    float d[MT][64];
    int st = 0, last_st = 0, last_hi_st = 0;
    uint32_t phase = 0;
    for (int j = 0; j < n_ctiles; ++j) {
      // Here the accumulators hold h(c) - x.c (the negated score): they start at h of their
      // columns, loaded straight into them, and the MMAs subtract the products. kKeys: they
      // start at h + ||x||^2 / 2 and so end at ||x - c||^2 / 2, not negative (up to rounding).
      const float2* h = reinterpret_cast<const float2*>(c_half + j * kBN);
#pragma unroll
      for (int i = 0; i < 16; ++i) {
        const float2 hv = __ldg(h + 4 * i);
#pragma unroll
        for (int m = 0; m < MT; ++m) {
          if constexpr (kKeys) {
            d[m][4 * i] = hv.x + x_half[m][0], d[m][4 * i + 2] = hv.x + x_half[m][1];
            d[m][4 * i + 1] = hv.y + x_half[m][0], d[m][4 * i + 3] = hv.y + x_half[m][1];
          } else {
            d[m][4 * i] = d[m][4 * i + 2] = hv.x;
            d[m][4 * i + 1] = d[m][4 * i + 3] = hv.y;
          }
        }
      }
#pragma unroll
      for (int m = 0; m < MT; ++m) fence_accumulators(d[m]);
      if (take_turns) named_barrier_sync(kTurn0 + wg, 256);  // our turn on the tensor cores
      for (int kc = 0; kc < nk; ++kc) {
        // Split: the column block's high-part stage first (hi_st), then st holds its low parts.
        int hi_st = st;
        if constexpr (kSplit) {
          mbarrier_wait(full0 + 8 * st, phase);
          if (++st == stages) st = 0, phase ^= 1;
        }
        mbarrier_wait(full0 + 8 * st, phase);
        wgmma_fence();
#pragma unroll
        for (int ks = 0; ks < 128 / kStepBytes; ++ks) {
          const uint32_t db = c_desc + uint32_t(st * kStageBytes + ks * kStepBytes) / 16;
#pragma unroll
          for (int m = 0; m < MT; ++m) {
            const uint32_t da =
                x_desc + uint32_t(kc * kBlockBytes + m * 64 * 128 + ks * kStepBytes) / 16;
            if constexpr (kSplit) {  // lo * hi + hi * lo + hi * hi, the small terms first
              const uint32_t db_hi =
                  c_desc + uint32_t(hi_st * kStageBytes + ks * kStepBytes) / 16;
              wgmma_m64n128_sub<V>(d[m], da + x_lo_step, db_hi);
              wgmma_m64n128_sub<V>(d[m], da, db);
              wgmma_m64n128_sub<V>(d[m], da, db_hi);
            } else {
              wgmma_m64n128_sub<V>(d[m], da, db);
            }
          }
        }
        wgmma_commit();
        // The tile's MMAs are all queued: the other warpgroup's turn (it takes n_ctiles turns,
        // warpgroup 0 n_ctiles - 1 + the first).
        if (take_turns && kc == nk - 1 && !(wg == 1 && j == n_ctiles - 1)) {
          named_barrier_arrive(kTurn0 + (wg ^ 1), 256);
        }
        if (kc > 0) {  // the previous column block's MMAs are done with its buffers
          wgmma_wait<1>();
          if constexpr (kSplit) mbarrier_arrive(empty0 + 8 * last_hi_st);
          mbarrier_arrive(empty0 + 8 * last_st);
        }
        last_hi_st = hi_st;
        last_st = st;
        if (++st == stages) st = 0, phase ^= 1;
      }
      wgmma_wait<0>();
#pragma unroll
      for (int m = 0; m < MT; ++m) fence_accumulators(d[m]);
      if (j == 0) KMEANS_TRACE(7, clock64());
      if constexpr (kSplit) mbarrier_arrive(empty0 + 8 * last_hi_st);
      mbarrier_arrive(empty0 + 8 * last_st);
      // Fold tile j: its smallest h - x.c by a pairwise tree over the thread's 32 columns of a
      // row (the lower columns win ties), then against the running best, whose columns are all
      // lower. Five dependent steps instead of 32. Never NaN: inputs are checked finite with
      // bounded norms, and padding holds +inf.
      if constexpr (kKeys) {
        // Score keys: a distance's bits (not negative: they order as integers) with the low
        // kKeySlotBits replaced by its slot among the thread's 32 columns (slot 2 i + e for
        // column 8 i + 2 (lane % 4) + e), so one integer minimum carries the argmin: one logic
        // instruction a column to pack and about half a min (3-input) to reduce, where the float
        // tree took three (compare, two selects). Distances equal up to the dropped bits
        // (2^-18 relative) go to the lower column, as exact ties do; a tiny negative distance
        // (a point on a centroid, up to rounding) still orders below every positive one.
#pragma unroll
        for (int m = 0; m < MT; ++m) {
#pragma unroll
          for (int hh = 0; hh < 2; ++hh) {
            int key[16];
#pragma unroll
            for (int i = 0; i < 16; ++i) {
              key[i] = min(score_key(d[m][4 * i + 2 * hh], a.key_mask, 2 * i),
                           score_key(d[m][4 * i + 2 * hh + 1], a.key_mask, 2 * i + 1));
            }
#pragma unroll
            for (int w = 1; w < 16; w *= 2) {
#pragma unroll
              for (int i = 0; i < 16; i += 2 * w) key[i] = min(key[i], key[i + w]);
            }
            // Earlier tiles hold lower columns: they keep ties (compared without the slots).
            if ((key[0] >> kKeySlotBits) < (best_key[m][hh] >> kKeySlotBits)) {
              best_key[m][hh] = key[0], best_tile[m][hh] = j;
            }
          }
        }
      } else {
#pragma unroll
        for (int m = 0; m < MT; ++m) {
#pragma unroll
          for (int hh = 0; hh < 2; ++hh) {
            float v[16];
            int ix[16];
#pragma unroll
            for (int i = 0; i < 16; ++i) {
              const float v0 = d[m][4 * i + 2 * hh], v1 = d[m][4 * i + 2 * hh + 1];
              const bool right = v1 < v0;
              v[i] = right ? v1 : v0;
              ix[i] = right ? 8 * i + 1 : 8 * i;
            }
#pragma unroll
            for (int w = 1; w < 16; w *= 2) {
#pragma unroll
              for (int i = 0; i < 16; i += 2 * w) {
                if (v[i + w] < v[i]) v[i] = v[i + w], ix[i] = ix[i + w];
              }
            }
            if (v[0] < best[m][hh]) best[m][hh] = v[0], best_i[m][hh] = j * kBN + 2 * (lane % 4) + ix[0];
          }
        }
      }
    }
    KMEANS_TRACE(8, clock64());
    KMEANS_TRACE_BY(128, 9, clock64());
    // The results: each row's winner over its quad, stored by the quad's lane 0; the tile's
    // inertia and changed-label count summed per warp, then over the warps in a fixed order.
    double dist_sum = 0;
    int changed = 0;
#pragma unroll
    for (int m = 0; m < MT; ++m) {
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {  // the four lanes of a quad hold the same rows
        if constexpr (kKeys) {  // the score x.c - h = ||x||^2 / 2 - ||x - c||^2 / 2
          const uint32_t key = uint32_t(best_key[m][hh]);
          const int slot = int(key & ~a.key_mask);
          best[m][hh] = x_half[m][hh] - __uint_as_float(key & a.key_mask);
          best_i[m][hh] = best_tile[m][hh] * kBN + 8 * (slot >> 1) + 2 * (lane % 4) + (slot & 1);
        } else {
          best[m][hh] = -best[m][hh];  // the score x.c - h
        }
#pragma unroll
        for (int off = 1; off <= 2; off *= 2) {
          const float ov = __shfl_xor_sync(0xffffffffu, best[m][hh], off);
          const int oi = __shfl_xor_sync(0xffffffffu, best_i[m][hh], off);
          if (better(ov, oi, best[m][hh], best_i[m][hh])) best[m][hh] = ov, best_i[m][hh] = oi;
        }
      }
    }
#pragma unroll
    for (int m = 0; m < MT; ++m) {
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        const int r = group_row0 + m * 64 + (warp % 4) * 16 + hh * 8 + lane / 4;
        if (lane % 4 == 0 && r < rows) {
          const int64_t g = int64_t(b) * a.n + row0 + r;
          const float score = best[m][hh];
          const int label = best_i[m][hh];
          float dist;
          if (a.metric == kL2) {
            dist = fmaxf(0.0f, x_norm[m][hh] - 2.0f * score);
          } else if (a.metric == kCosine) {
            dist = fmaxf(0.0f, 1.0f - score * x_norm[m][hh]);
          } else {
            dist = -score;
          }
          dist_sum += dist;
          changed += old_label[m][hh] != label;
          a.labels[g] = label;
          if (a.distances) a.distances[g] = dist;
          if (a.sort_keys) store_sort_key(a, g, b, label);
        }
      }
    }
    dist_sum = warp_sum_f64(dist_sum);
    changed = warp_sum_i32(changed);
    if (lane == 0) warp_inertia[warp] = dist_sum, warp_changed[warp] = changed;
    KMEANS_TRACE(10, clock64());
    named_barrier_sync(kResults, kConsumerThreads);
    KMEANS_TRACE(11, clock64());
    if (threadIdx.x == 0 && a.tile_inertia) {
      double s = 0;
      int c = 0;
      for (int w = 0; w < kConsumerWarps; ++w) s += warp_inertia[w], c += warp_changed[w];
      a.tile_inertia[blockIdx.x] = s;
      a.tile_changed[blockIdx.x] = c;
    }
    KMEANS_TRACE(12, clock64());
    KMEANS_TRACE(13, trace_global_ns());
    KMEANS_TRACE(0, static_cast<unsigned long long>(trace_sm()) << 32 | unsigned(n_ctiles));
  }
#else
  __trap();  // launched only where wgmma_probe_kernel said the sm_90a code is here
#endif
}

// ---- points: norms and checks --------------------------------------------------------------

// kNormLanes lanes per point: ||x||^2 (l2) or 1/||x|| (cosine) into out; the first non-finite
// element (flat index (b * n + i) * d + col), the first point with a squared norm over
// kMaxSquaredNorm and, for cosine, the first zero vector, by atomicMin. vec: 16-byte loads (rows
// aligned, d and ld multiples of 16 / sizeof(V)). Squares summed in a fixed order, in f64 (16-bit
// rows in 16-byte words: in f32, as the assignment's tile_point_norms sums them).
// (A warp per point cost 767 us for 3M points of D = 128 under Nsight Compute, nearly all of it
// instructions: a 64-bit division and ten 64-bit shuffles a point, 2-byte loads.)
template <class V>
__global__ void point_norms_kernel(const V* __restrict__ x, int64_t batch, int64_t n, int d,
                                   int64_t ld, int64_t batch_stride, bool vec, int metric,
                                   float* out, unsigned long long* first_bad,
                                   unsigned long long* first_zero,
                                   unsigned long long* first_huge) {
  const int64_t g = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kNormLanes;
  const int lane = threadIdx.x % kNormLanes;
  if (g >= batch * n) return;  // a point's lanes leave together
  int64_t b = 0, i = 0;
  if (batch * n <= int64_t(UINT32_MAX)) {  // 32-bit division where it suffices
    b = unsigned(g) / unsigned(n), i = unsigned(g) % unsigned(n);
  } else {
    b = g / n, i = g % n;
  }
  const V* row = x + b * batch_stride + i * ld;
  // 16-bit rows in 16-byte words: summed in f32 as the assignment's tile_point_norms sums them
  // (norm_lane_add); other rows in f64.
  constexpr bool kWords16 = sizeof(V) == 2;
  const unsigned mask = cuda::team_mask(kNormLanes);
  double s = 0;
  int bad = d;
  if (vec) {
    constexpr int kV = 16 / sizeof(V);
    float s16 = 0;
    for (int col = lane * kV; col < d; col += kNormLanes * kV) {
      float v[kV];
      cuda::load_vec<kV>(row + col, v);
#pragma unroll
      for (int e = 0; e < kV; ++e) {
        if (!isfinite(v[e])) bad = min(bad, col + e);
        if constexpr (!kWords16) s += double(v[e]) * v[e];
      }
      if constexpr (kWords16) s16 = norm_lane_add(s16, v);
    }
    if constexpr (kWords16) s = norm_lanes_total(s16, mask);
  } else {
    for (int col = lane; col < d; col += kNormLanes) {
      const float v = load_f32(row[col]);
      if (!isfinite(v)) bad = min(bad, col);
      s += double(v) * v;
    }
  }
#pragma unroll
  for (int off = 1; off < kNormLanes; off *= 2) {
    if (!(kWords16 && vec)) s += __shfl_xor_sync(mask, s, off, kNormLanes);
    bad = min(bad, __shfl_xor_sync(mask, bad, off, kNormLanes));
  }
  if (lane != 0) return;
  if (bad < d) atomicMin(first_bad, static_cast<unsigned long long>(g) * d + bad);
  if (bad == d && s > kMaxSquaredNorm) atomicMin(first_huge, static_cast<unsigned long long>(g));
  if (metric == kCosine) {
    if (s <= 0) atomicMin(first_zero, static_cast<unsigned long long>(g));
    if (out) out[g] = s > 0 ? float(1.0 / sqrt(s)) : 0.0f;
  } else if (out) {
    out[g] = float(s);
  }
}

// ---- centroids -----------------------------------------------------------------------------

// A warp per padded centroid row (b, j): the f32 centroid rounded to the tensor-core type and
// zero-padded, and its score offset h (l2: ||rounded c||^2 / 2, else 0; padding: +inf). Rows
// at or past rows_per_problem[b] (when given; k otherwise) are padding. exact (f32 only): h of
// the unrounded centroid, and the table holds the f32 values (row-major, for assign_kernel's
// own split) or their tf32 high and low parts (tiled, for assign_wgmma_kernel's kSplit).
// Layout: row-major [B][k_pad][d_pad], or (tiled, for assign_wgmma_kernel) the stages in the
// order the kernel streams them, each in its shared-memory layout: problem b, centroid tile
// j / kBN, column block col / kBk, (exact: high parts, then low parts,) then row j % kBN of a
// 128-byte swizzled block.
template <class V>
__global__ void table_kernel(const float* __restrict__ centroids, int batch, int k, int d,
                             int k_pad, int d_pad, bool l2, bool tiled, bool exact,
                             const int* active,
                             const int* rows_per_problem, typename Tile<V>::Elem* table,
                             float* c_half) {
  using E = typename Tile<V>::Elem;
  constexpr int kBk = Tile<V>::kBk;
  const int64_t w = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (w >= int64_t(batch) * k_pad) return;
  const int b = int(w / k_pad), j = int(w % k_pad);
  if (active && !active[b]) return;
  const int rows = rows_per_problem ? rows_per_problem[b] : k;
  const float* src = centroids + (int64_t(b) * k + j) * d;
  // Tiled: the stage holding (b, j) starts at element stage0 + kc * kStageElems.
  constexpr int kStageElems = kStageBytes / int(sizeof(E));
  const int parts = std::is_same_v<V, float> && tiled && exact ? 2 : 1;  // stages per column block
  const int nk = d_pad / kBk;
  const int64_t stage0 = ((int64_t(b) * (k_pad / kBN) + j / kBN) * nk * parts) * kStageElems;
  double s = 0;
  for (int col = lane; col < d_pad; col += kWarp) {
    const float v = j < rows && col < d ? src[col] : 0.0f;
    E e = to_elem<V>(v);
    if constexpr (std::is_same_v<V, float>) {
      if (exact) e = v;
    }
    if (tiled) {
      E* at = table + stage0 + int64_t(col / kBk) * parts * kStageElems +
              cuda::hopper::swizzled(j % kBN, (col % kBk) * int(sizeof(E))) / sizeof(E);
      if constexpr (std::is_same_v<V, float>) {
        if (parts == 2) {
          uint32_t hi, lo;
          split_tf32(v, hi, lo);
          at[0] = __uint_as_float(hi);
          at[kStageElems] = __uint_as_float(lo);
        }
      }
      if (parts == 1) *at = e;
    } else {
      table[w * d_pad + col] = e;
    }
    const float r = elem_f32<V>(e);
    s += double(r) * r;
  }
  s = warp_sum_f64(s);
  if (lane == 0) c_half[w] = j >= rows ? INFINITY : (l2 ? float(0.5 * s) : 0.0f);
}

// A warp per seed (b, j): centroid row j of problem b = point rows[b * k + j] (cosine: scaled
// to unit length).
template <class V>
__global__ void gather_kernel(const V* __restrict__ x, int batch, int64_t n, int k, int d,
                              int64_t ld, int64_t batch_stride, const int64_t* rows,
                              const float* inv_norms, float* centroids) {
  const int64_t w = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (w >= int64_t(batch) * k) return;
  const int64_t b = w / k, i = rows[w];
  const V* src = x + b * batch_stride + i * ld;
  const float scale = inv_norms ? inv_norms[b * n + i] : 1.0f;
  for (int col = lane; col < d; col += kWarp) centroids[w * d + col] = load_f32(src[col]) * scale;
}

// ---- sort-inverse update -------------------------------------------------------------------

// The sorted points fall into segments ("slots"), one per cluster c = b * k + j, in slot order.
// The keys are b * k + j (slot c), or with label-major keys (label_batch = B, see fit) the label
// j alone: CUB's radix sort is stable and the points come in problem order, so the sort by label
// leaves them in (j, b) order, slot j * B + b. A cluster's points keep their order either way, so
// both give the same chunks and the same sums.
__host__ __device__ __forceinline__ int slot_of_cluster(int c, int k, int label_batch) {
  return label_batch > 0 ? (c % k) * label_batch + c / k : c;
}
__host__ __device__ __forceinline__ int problem_of_slot(int s, int k, int label_batch) {
  return label_batch > 0 ? s % label_batch : s / k;
}

// Thread p in [0, total]: offsets[s] = p for every slot s in (slot[p - 1], slot[p]], with
// slot[-1] = -1 and slot[total] = clusters: the first sorted position of each slot (empty ones
// included), read off the sorted keys (and, label-major, the problems of the sorted points:
// order[p] / n) in one coalesced pass.
template <class Key>
__global__ void bounds_kernel(const Key* __restrict__ sorted_keys,
                              const int32_t* __restrict__ order, int n, int label_batch,
                              int64_t total, int clusters, int32_t* offsets) {
  const int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p > total) return;
  auto slot = [&](int64_t i) {
    const int key = int(sorted_keys[i]);
    return label_batch > 0 ? key * label_batch + order[i] / n : key;
  };
  const int prev = p == 0 ? -1 : slot(p - 1);
  const int cur = p == total ? clusters : slot(p);
  for (int c = prev + 1; c <= cur; ++c) offsets[c] = int32_t(p);
}

// Thread c in [0, clusters]: the number of kChunk-point chunks slot c splits into (0 for
// c = clusters), the input of the chunk-offset scan.
__global__ void chunk_counts_kernel(const int32_t* __restrict__ offsets, int clusters,
                                    int32_t* chunk_counts) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c > clusters) return;
  chunk_counts[c] = c < clusters ? (offsets[c + 1] - offsets[c] + kChunk - 1) / kChunk : 0;
}

// The warp's chunk q's slot: the last c with chunk_offsets[c] <= q (empty slots own no chunk).
// A 32-way search: each round every lane probes one point of the range and a ballot narrows it
// 32-fold (3 dependent loads for 32k clusters instead of 15).
__device__ __forceinline__ int chunk_cluster(const int32_t* __restrict__ chunk_offsets,
                                             int clusters, int64_t q, int lane) {
  int lo = 0, hi = clusters;  // chunk_offsets[lo] <= q < chunk_offsets[hi]
  while (hi - lo > 1) {
    const int step = (hi - lo + kWarp - 1) / kWarp;
    const int probe = lo + lane * step;
    const unsigned below = __ballot_sync(0xffffffffu, probe < hi && chunk_offsets[probe] <= q);
    lo += (kWarp - 1 - __clz(below)) * step;  // lane 0 probes lo: below is never 0
    hi = min(hi, lo + step);
  }
  return lo;
}

constexpr int kRowsInFlight = 8;  // rows a warp loads before it adds them (sum_chunks_kernel)

// A warp per chunk q: the rows of its slot's points at sorted positions [p0, p1), summed in
// order in f32 (cosine: unit vectors) into partial[q][0, d). Lane l holds columns 4l .. 4l + 3 of
// each 128-column block (one vector load per row when kVec4). The chunk's point indices (and
// cosine scales) are read once, a point per lane, and handed round by shuffle; each batch of
// kRowsInFlight rows is loaded unconditionally (rows past the chunk and columns past d read valid
// addresses whose values are dropped) so that the loads share one basic block and are in flight
// together. (Loading order[p] and then its row, one row at a time under branches, left one row in
// flight per warp: 484 us for 3M points of D = 128 bf16 under Nsight Compute, 35% of DRAM
// bandwidth.)
template <class V, bool kVec4>
__global__ void __launch_bounds__(kThreads)
    sum_chunks_kernel(const V* __restrict__ x, int n, int d, int k, int clusters, int64_t ld,
                      int64_t batch_stride, const int32_t* __restrict__ order,
                      const int32_t* __restrict__ offsets,
                      const int32_t* __restrict__ chunk_offsets, int label_batch,
                      const float* inv_norms, const int* active, int64_t max_chunks,
                      float* partial) {
  static_assert(kChunk % kWarp == 0 && kWarp % kRowsInFlight == 0, "whole batches per lane group");
  constexpr int kPerLane = kChunk / kWarp;
  const int64_t q = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (q >= max_chunks || q >= chunk_offsets[clusters]) return;  // whole warps leave
  const int c = chunk_cluster(chunk_offsets, clusters, q, lane);  // a slot
  const int b = problem_of_slot(c, k, label_batch);
  if (active && !active[b]) return;
  const int p0 = offsets[c] + int(q - chunk_offsets[c]) * kChunk;
  const int count = min(offsets[c + 1] - p0, kChunk);  // 1 .. kChunk
  // The chunk's points all belong to problem b, whose rows are addressed in bytes (a 32 x 64-bit
  // multiply-add a row). Lane l: point p0 + l + kWarp * j's index in problem b and its scale
  // (past the chunk: the chunk's last point's, never added). No branches: the loads go out
  // together.
  const char* xb = reinterpret_cast<const char*>(x + b * batch_stride);
  const uint64_t row_bytes = uint64_t(ld) * sizeof(V);
  int my_point[kPerLane];
  float my_scale[kPerLane];
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    my_point[j] = order[p0 + min(lane + kWarp * j, count - 1)] - b * n;
  }
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    my_scale[j] = inv_norms ? inv_norms[b * n + my_point[j]] : 1.0f;
  }
#pragma unroll 1
  for (int col0 = 0; col0 < d; col0 += 4 * kWarp) {
    const int col = col0 + 4 * lane;
    const int load_col = col < d ? col : 0;  // lanes past d load column 0 and store nothing
    float acc[4] = {0, 0, 0, 0};
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      const int rows = min(kWarp, count - kWarp * j);  // warp-uniform
      if (rows <= 0) break;
#pragma unroll 1
      for (int r0 = 0; r0 < rows; r0 += kRowsInFlight) {
        float v[kRowsInFlight][4], scale[kRowsInFlight];
#pragma unroll
        for (int i = 0; i < kRowsInFlight; ++i) {
          const unsigned point = __shfl_sync(0xffffffffu, my_point[j], r0 + i);
          const V* row = reinterpret_cast<const V*>(xb + point * row_bytes);
          scale[i] = __shfl_sync(0xffffffffu, my_scale[j], r0 + i);
          if constexpr (kVec4) {
            cuda::load_vec<4>(row + load_col, v[i]);
          } else {
#pragma unroll
            for (int e = 0; e < 4; ++e) v[i][e] = load_f32(row[min(load_col + e, d - 1)]);
          }
        }
#pragma unroll
        for (int i = 0; i < kRowsInFlight; ++i) {
          if (r0 + i < rows) {
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[e] += v[i][e] * scale[i];
          }
        }
      }
    }
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      if (col + e < d) partial[q * d + col + e] = acc[e];
    }
  }
}

constexpr int kFinalizeThreads = 128;

// Sum over a block's threads in a fixed order (warps by shuffle, then every thread over the warps'
// sums in warp order); every thread gets the result. blockDim.x: a multiple of kWarp.
template <class T>
__device__ T block_sum(T v) {
  __shared__ T warp_sums[kWarp];
#pragma unroll
  for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  const int warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
  if (threadIdx.x % kWarp == 0) warp_sums[warp] = v;
  __syncthreads();
  T s = 0;
  for (int w = 0; w < warps; ++w) s += warp_sums[w];
  __syncthreads();  // warp_sums may be reused by a later call
  return s;
}

// A block per cluster c = (b, j), a thread per column: its partials (those of its slot) summed in
// chunk order in f64, the mean (cosine: the normalised sum; a zero sum keeps the centroid) into
// centroids; counts[c]. Empty clusters keep their centroid here.
__global__ void __launch_bounds__(kFinalizeThreads)
    finalize_kernel(const float* __restrict__ partial, const int32_t* offsets,
                    const int32_t* chunk_offsets, int label_batch, int clusters, int k, int d,
                    bool cosine, const int* active, float* centroids, int32_t* counts) {
  const int64_t c = blockIdx.x;
  if (c >= clusters || (active && !active[c / k])) return;
  const int slot = slot_of_cluster(int(c), k, label_batch);
  const int32_t count = offsets[slot + 1] - offsets[slot];
  if (threadIdx.x == 0) counts[c] = count;
  if (count == 0) return;
  const int32_t q0 = chunk_offsets[slot], q1 = chunk_offsets[slot + 1];
  // 16 loads in flight a thread: a cluster's chunks are summed in one chain, and one of the
  // clusters can hold a large share of the points (1M points in 1024 clusters: 37 us with 4).
  auto column_sum = [&](int col) {
    double acc = 0;
#pragma unroll 16
    for (int32_t q = q0; q < q1; ++q) acc += partial[int64_t(q) * d + col];
    return acc;
  };
  double scale = 1.0 / count;
  if (cosine) {
    double s = 0;
    for (int col = threadIdx.x; col < d; col += blockDim.x) {
      const double acc = column_sum(col);
      s += acc * acc;
    }
    s = block_sum(s);
    if (s <= 0) return;  // points that cancel out leave the centroid where it was
    scale = 1.0 / sqrt(s);
  }
  for (int col = threadIdx.x; col < d; col += blockDim.x) {
    centroids[c * d + col] = float(column_sum(col) * scale);
  }
}

// A block per problem (policy reseed_farthest): the e-th empty cluster (in index order) takes the
// e-th farthest point from its own centroid (distance descending, ties to the lower index).
template <class V>
__global__ void reseed_kernel(const V* __restrict__ x, int64_t n, int k, int d, int64_t ld,
                              int64_t batch_stride, const float* __restrict__ distances,
                              const int32_t* counts, const float* inv_norms, const int* active,
                              float* centroids) {
  const int b = blockIdx.x;
  if (active && !active[b]) return;
  __shared__ float best_d[kWarp];
  __shared__ int64_t best_i[kWarp];
  __shared__ int empties;
  if (threadIdx.x == 0) empties = 0;
  __syncthreads();
  for (int j = threadIdx.x; j < k; j += blockDim.x) {
    if (counts[int64_t(b) * k + j] == 0) atomicAdd(&empties, 1);
  }
  __syncthreads();
  if (empties == 0) return;
  const float* dist = distances + int64_t(b) * n;
  float prev_d = INFINITY;
  int64_t prev_i = -1;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  for (int j = 0; j < k; ++j) {
    if (counts[int64_t(b) * k + j] != 0) continue;
    // The largest (distance, -index) strictly after (prev_d, prev_i) in that order.
    float md = -INFINITY;
    int64_t mi = -1;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const float v = dist[i];
      const bool after = v < prev_d || (v == prev_d && i > prev_i);
      if (after && (mi < 0 || v > md)) md = v, mi = i;  // i rises: a tie keeps the lower index
    }
#pragma unroll
    for (int off = kWarp / 2; off > 0; off /= 2) {
      const float od = __shfl_xor_sync(0xffffffffu, md, off);
      const int64_t oi = __shfl_xor_sync(0xffffffffu, mi, off);
      if (oi >= 0 && (mi < 0 || od > md || (od == md && oi < mi))) md = od, mi = oi;
    }
    if (lane == 0) best_d[warp] = md, best_i[warp] = mi;
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int w = 1; w < int(blockDim.x) / kWarp; ++w) {
        const int64_t oi = best_i[w];
        const float od = best_d[w];
        if (oi >= 0 && (best_i[0] < 0 || od > best_d[0] || (od == best_d[0] && oi < best_i[0])))
          best_d[0] = od, best_i[0] = oi;
      }
    }
    __syncthreads();
    const int64_t pick = best_i[0];
    prev_d = best_d[0];
    prev_i = pick;
    __syncthreads();  // everyone has read best_*[0] before the next round writes it
    if (pick < 0) break;
    const V* src = x + int64_t(b) * batch_stride + pick * ld;
    const float scale = inv_norms ? inv_norms[int64_t(b) * n + pick] : 1.0f;
    for (int col = threadIdx.x; col < d; col += blockDim.x)
      centroids[(int64_t(b) * k + j) * d + col] = load_f32(src[col]) * scale;
  }
}

// A block per problem b (blockDim.x: a multiple of kWarp, by the tile count only): if active,
// the inertia (tile sums in a fixed order), the history entry and the convergence test of
// iteration scalars[0] (0: the initial assignment). The last block to finish (a ticket in
// scalars[2], 0 between launches) then sets scalars[1] (any problem still active) and advances
// scalars[0]: one launch where a memset, this and a one-thread kernel were three.
__global__ void converge_kernel(const double* __restrict__ tile_inertia,
                                const int* __restrict__ tile_changed, int tiles, double tolerance,
                                bool fixed, int* active, double* last_inertia, double* history,
                                int history_rows, int* iterations, int* scalars) {
  const int b = blockIdx.x, batch = gridDim.x;
  const int it = scalars[0];  // read before this block's ticket: the last block advances it
  if (active[b]) {  // uniform over the block
    const double* inertia_b = tile_inertia + int64_t(b) * tiles;
    const int* changed_b = tile_changed + int64_t(b) * tiles;
    double s = 0;
    int changed = 0;
#pragma unroll 8
    for (int t = threadIdx.x; t < tiles; t += blockDim.x) {
      s += inertia_b[t], changed += changed_b[t];
    }
    s = block_sum(s);
    changed = block_sum(changed);
    if (threadIdx.x == 0) {
      if (it < history_rows) history[int64_t(it) * batch + b] = s;
      if (it > 0) {
        iterations[b] = it;
        const double before = last_inertia[b];
        if (!fixed && (changed == 0 || before - s <= tolerance * fabs(before))) active[b] = 0;
      }
      last_inertia[b] = s;
    }
  }
  __shared__ bool last;
  if (threadIdx.x == 0) {
    __threadfence();  // active[b] before the ticket
    last = atomicAdd(reinterpret_cast<unsigned*>(scalars + 2), 1u) == unsigned(batch - 1);
  }
  __syncthreads();
  if (!last) return;
  int any = 0;  // L2 reads (__ldcg): other blocks wrote active[] after this SM may have cached it
  for (int p = threadIdx.x; p < batch && !any; p += blockDim.x) any = __ldcg(active + p) != 0;
  any = __syncthreads_or(any);
  if (threadIdx.x == 0) scalars[1] = any, scalars[0] = it + 1, scalars[2] = 0;
}

// Thread g: one global atomic for point g's label (count_labels past the shared-memory bins).
__global__ void count_labels_kernel(const int32_t* __restrict__ labels, int64_t total, int64_t n,
                                    int k, int32_t* counts) {
  const int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g >= total) return;
  const int32_t j = labels[g];
  if (unsigned(j) < unsigned(k)) atomicAdd(&counts[(g / n) * k + j], 1);  // integers: exact
}

// Block s of problem b (blockIdx.x = b * spans + s) counts the labels of points
// [s * span, (s + 1) * span) of problem b in shared memory (k bins), then adds its non-zero bins
// into counts[b * k + j]: a few global atomics per bin instead of one per point on a few hot
// counters (149 us for 3M points in 12k clusters; integers, so exact in any order).
__global__ void count_labels_shared_kernel(const int32_t* __restrict__ labels, int64_t n, int k,
                                           int64_t span, int64_t spans, int32_t* counts) {
  extern __shared__ int32_t bins[];
  for (int j = threadIdx.x; j < k; j += blockDim.x) bins[j] = 0;
  __syncthreads();
  const int64_t b = blockIdx.x / spans, begin = blockIdx.x % spans * span;
  const int64_t end = min(n, begin + span);
  const int32_t* own = labels + b * n;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const int32_t j = own[i];
    if (unsigned(j) < unsigned(k)) atomicAdd(&bins[j], 1);  // (labels are in [0, k): a guard)
  }
  __syncthreads();
  for (int j = threadIdx.x; j < k; j += blockDim.x) {
    if (bins[j] != 0) atomicAdd(&counts[b * k + j], bins[j]);
  }
}

__global__ void widen_kernel(const int32_t* in, int64_t total, int64_t* out) {
  const int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g < total) out[g] = in[g];
}

// A warp per centroid row of c [rows, d] (given by the caller): the first non-finite element
// (flat index), the first row with a squared norm over kMaxSquaredNorm and, for cosine, the first
// zero row by atomicMin; cosine rows scaled to unit length.
__global__ void check_centroids_kernel(float* c, int64_t rows, int d, bool cosine,
                                       unsigned long long* first_bad,
                                       unsigned long long* first_zero,
                                       unsigned long long* first_huge) {
  const int64_t w = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (w >= rows) return;
  float* row = c + w * d;
  double s = 0;
  int bad = d;
  for (int col = lane; col < d; col += kWarp) {
    if (!isfinite(row[col])) bad = min(bad, col);
    s += double(row[col]) * row[col];
  }
  s = warp_sum_f64(s);
#pragma unroll
  for (int off = kWarp / 2; off > 0; off /= 2) bad = min(bad, __shfl_xor_sync(0xffffffffu, bad, off));
  if (bad < d) {
    if (lane == 0) atomicMin(first_bad, static_cast<unsigned long long>(w) * d + bad);
    return;
  }
  if (s > kMaxSquaredNorm) {
    if (lane == 0) atomicMin(first_huge, static_cast<unsigned long long>(w));
    return;
  }
  if (!cosine) return;
  if (s <= 0) {
    if (lane == 0) atomicMin(first_zero, static_cast<unsigned long long>(w));
    return;
  }
  const double scale = 1.0 / sqrt(s);
  for (int col = lane; col < d; col += kWarp) row[col] = float(row[col] * scale);
}

// k-means||, a thread per point g = b * n + i: min_d2[g] = min(min_d2[g], d2[g]), the squared
// distance to the nearest candidate so far (first pass: d2).
__global__ void merge_min_kernel(const float* __restrict__ d2, float* min_d2, int64_t total,
                                 bool first) {
  const int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g < total) min_d2[g] = first ? d2[g] : fminf(min_d2[g], d2[g]);
}

// k-means|| sampling, a thread per point: flag[g] = 1 with probability
// min(1, ell * min_d2[g] / phi[b]), from a counter-based hash of (seed_b, round, i): the same
// flags on every run. Points on a candidate (min_d2 = 0) are never drawn.
__global__ void sample_kernel(const float* __restrict__ min_d2, int64_t total, int64_t n,
                              const double* phi, double ell, const uint64_t* seeds, int round,
                              int* flags) {
  const int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g >= total) return;
  const int64_t b = g / n;
  uint64_t z = seeds[b] ^ (uint64_t(round) << 48) ^ (uint64_t(g % n) * 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  const double u = double(z >> 11) * 0x1.0p-53;
  const float v = min_d2[g];
  flags[g] = v > 0 && phi[b] > 0 && u * phi[b] < ell * double(v);
}

// A block per problem: phi[b] = the sum of min_d2 over its points, in a fixed order.
__global__ void problem_sum_kernel(const float* __restrict__ v, int64_t n, double* sums) {
  __shared__ double part[kThreads];
  const float* p = v + int64_t(blockIdx.x) * n;
  double s = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += p[i];
  part[threadIdx.x] = s;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if (int(threadIdx.x) < w) part[threadIdx.x] += part[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) sums[blockIdx.x] = part[0];
}

// Streaming fits, a warp per cluster j of one problem: the chunk's partial sums of cluster j (in
// order) added into sums[j] (f64) and its point count into counts[j]. Chunks are added in a fixed
// order: the same bits on every run.
__global__ void accumulate_kernel(const float* __restrict__ partial, const int32_t* offsets,
                                  const int32_t* chunk_offsets, int k, int d, double* sums,
                                  int64_t* counts) {
  const int64_t j = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (j >= k) return;
  const int32_t count = offsets[j + 1] - offsets[j];
  if (lane == 0) counts[j] += count;
  for (int col = lane; col < d && count > 0; col += kWarp) {
    double acc = 0;
    for (int32_t q = chunk_offsets[j]; q < chunk_offsets[j + 1]; ++q) {
      acc += partial[int64_t(q) * d + col];
    }
    sums[j * d + col] += acc;
  }
}

// Streaming fits, a warp per cluster: the mean (cosine: the normalised sum) of the accumulated
// sums into centroids; a cluster without points keeps its centroid.
__global__ void finalize_sums_kernel(const double* __restrict__ sums, const int64_t* counts, int k,
                                     int d, bool cosine, float* centroids) {
  const int64_t j = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (j >= k || counts[j] == 0) return;
  double scale = 1.0 / double(counts[j]);
  if (cosine) {
    double s = 0;
    for (int col = lane; col < d; col += kWarp) s += sums[j * d + col] * sums[j * d + col];
    s = warp_sum_f64(s);
    if (s <= 0) return;
    scale = 1.0 / sqrt(s);
  }
  for (int col = lane; col < d; col += kWarp) centroids[j * d + col] = float(sums[j * d + col] * scale);
}

// Streaming fits, one warp: the chunk's tile inertias and changed-label counts (in tile order)
// added into totals[0] and changed[0].
__global__ void add_tiles_kernel(const double* __restrict__ tile_inertia,
                                 const int* __restrict__ tile_changed, int tiles, double* total,
                                 int64_t* changed) {
  const int lane = threadIdx.x;
  double s = 0;
  int c = 0;
  for (int t = lane; t < tiles; t += kWarp) s += tile_inertia[t], c += tile_changed[t];
  s = warp_sum_f64(s);
  c = warp_sum_i32(c);
  if (lane == 0) *total += s, *changed += c;
}

__global__ void iota_kernel(int32_t* out, int64_t total) {
  const int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g < total) out[g] = int32_t(g);
}

// ---- host side -----------------------------------------------------------------------------

unsigned blocks_for(int64_t items, int per_block = kThreads) {
  return unsigned(std::max<int64_t>(1, (items + per_block - 1) / per_block));
}
unsigned warp_blocks(int64_t warps) { return blocks_for(warps * kWarp); }

// counts[b * k + j] = the number of points of problem b labelled j (labels in [0, k)).
void count_labels(cudaStream_t stream, const int32_t* labels, int64_t batch, int64_t n, int64_t k,
                  int32_t* counts) {
  TSR_CUDA_CHECK(cudaMemsetAsync(counts, 0, sizeof(int32_t) * size_t(batch * k), stream));
  if (batch * n == 0) return;
  constexpr int64_t kMaxSharedBins = 12288;  // 48 KiB of shared memory
  if (k > kMaxSharedBins) {
    count_labels_kernel<<<blocks_for(batch * n), kThreads, 0, stream>>>(labels, batch * n, n,
                                                                        int(k), counts);
  } else {
    // Spans of at least 16 points a thread and at least 2 points a bin, so that the flush of the
    // bins stays small against the counting.
    const int64_t span = std::max<int64_t>(16 * kThreads, 2 * k);
    const int64_t spans = (n + span - 1) / span;
    count_labels_shared_kernel<<<unsigned(batch * spans), kThreads, sizeof(int32_t) * size_t(k),
                                 stream>>>(labels, n, int(k), span, spans, counts);
  }
  TSR_CUDA_CHECK_LAUNCH("kmeans count labels");
}

// The sort-inverse update's segments: offsets[s] = the first sorted position of slot s
// (s <= clusters) and chunk_offsets[s] = the first chunk of slot s, from the sorted keys (and,
// label-major, the sorted points' problems: order, n). chunk_counts: scratch of clusters + 1.
size_t segment_temp_bytes(int clusters, cudaStream_t stream) {
  size_t bytes = 0;
  TSR_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, bytes, (int32_t*)nullptr,
                                               (int32_t*)nullptr, clusters + 1, stream));
  return bytes;
}
template <class Key>
void segment(cudaStream_t stream, const Key* sorted_keys, const int32_t* order, int n,
             int label_batch, int64_t total, int clusters, int32_t* offsets,
             int32_t* chunk_counts, int32_t* chunk_offsets, void* temp, size_t temp_bytes) {
  bounds_kernel<<<blocks_for(total + 1), kThreads, 0, stream>>>(sorted_keys, order, n, label_batch,
                                                                total, clusters, offsets);
  TSR_CUDA_CHECK_LAUNCH("kmeans bounds");
  chunk_counts_kernel<<<blocks_for(clusters + 1), kThreads, 0, stream>>>(offsets, clusters,
                                                                         chunk_counts);
  TSR_CUDA_CHECK_LAUNCH("kmeans chunk counts");
  TSR_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(temp, temp_bytes, chunk_counts, chunk_offsets,
                                               clusters + 1, stream));
}

// The update's sort of (key, point) pairs by the low key_bits of their keys: 16-bit keys when
// short_keys (keys and sorted_keys then hold uint16_t), else int32_t. With temp null: its size.
cudaError_t sort_pairs(void* temp, size_t& temp_bytes, const void* keys, void* sorted_keys,
                       const int32_t* points, int32_t* order, int64_t total, int key_bits,
                       bool short_keys, cudaStream_t stream) {
  if (short_keys) {
    return cub::DeviceRadixSort::SortPairs(temp, temp_bytes, static_cast<const uint16_t*>(keys),
                                           static_cast<uint16_t*>(sorted_keys), points, order,
                                           int(total), 0, key_bits, stream);
  }
  return cub::DeviceRadixSort::SortPairs(temp, temp_bytes, static_cast<const int32_t*>(keys),
                                         static_cast<int32_t*>(sorted_keys), points, order,
                                         int(total), 0, key_bits, stream);
}

// sum_chunks_kernel with 4-wide row loads when vec4 (D, ld, the batch stride and x's address
// multiples of 4 elements).
template <class V>
void sum_chunks(cudaStream_t stream, bool vec4, const V* x, int n, int d, int k, int clusters,
                int64_t ld, int64_t batch_stride, const int32_t* order, const int32_t* offsets,
                const int32_t* chunk_offsets, int label_batch, const float* inv_norms,
                const int* active, int64_t max_chunks, float* partial) {
  auto kernel = vec4 ? sum_chunks_kernel<V, true> : sum_chunks_kernel<V, false>;
  kernel<<<warp_blocks(max_chunks), kThreads, 0, stream>>>(
      x, n, d, k, clusters, ld, batch_stride, order, offsets, chunk_offsets, label_batch,
      inv_norms, active, max_chunks, partial);
  TSR_CUDA_CHECK_LAUNCH("kmeans sum chunks");
}

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Whether X's rows can be read in 16-byte words: D, ld and the batch stride multiples of
// 16 / sizeof(V) elements, the data 16-byte aligned.
template <class V>
bool rows_16b_aligned(const BatchedDenseView<const V>& x) {
  constexpr int kV = 16 / sizeof(V);
  return x.cols % kV == 0 && x.ld % kV == 0 && x.batch_stride % kV == 0 &&
         reinterpret_cast<uintptr_t>(x.data) % 16 == 0;
}

template <class T>
Buffer<T> device_buffer(int64_t n) {  // at least one element: a valid pointer for empty shapes
  return Buffer<T>(static_cast<size_t>(std::max<int64_t>(n, 1)), MemorySpace::device);
}

// assign_kernel's shared memory: the resident point tile and the stages, or (wide) stages that
// carry a point chunk too.
template <class V>
size_t assign_smem_bytes(int d_pad, bool wide = false) {
  using T = Tile<V>;
  const size_t resident = wide ? 0 : size_t(kBM) * (d_pad + T::kPad);
  const size_t stage = size_t(wide ? kBN + kBM : kBN) * (T::kBk + T::kPad);
  return sizeof(typename T::Elem) * (resident + size_t(kStages) * stage);
}

// The widest D the GPU path takes (wider than a resident point tile allows, the points stream
// with the centroids: assign_kernel's kWide).
constexpr int64_t kMaxDimension = int64_t(1) << 20;

// parts: 2 for the 3xTF32 kernel (kSplit), which holds its point tile twice.
template <class V>
size_t wgmma_smem_bytes(int d_pad, int mt, int stages, int parts = 1) {
  return size_t(parts) * (d_pad / Tile<V>::kBk) * (128 * mt) * 128 +
         size_t(stages) * kStageBytes + 1024;  // + alignment slack
}

// Ring stages for assign_wgmma_kernel<V, mt>: as many as fit up to kMaxStages, within half the
// SM's shared memory when mt = 1 (two blocks per SM) and kMinStages fit there; 0 when fewer than
// kMinStages fit at all. Budgets leave kStaticSmem for the kernel's static shared memory.
// parts = 2 (kSplit): one block per SM.
template <class V>
int wgmma_stages(int d_pad, int mt, size_t block_limit, size_t sm_bytes, int parts = 1) {
  constexpr size_t kStaticSmem = 256;  // ring and rows barriers + the per-warp sums (240 bytes)
  const size_t fixed = wgmma_smem_bytes<V>(d_pad, mt, 0, parts) + kStaticSmem;
  auto fitting = [&](size_t budget) {
    return budget < fixed ? 0 : int(std::min<size_t>(kMaxStages, (budget - fixed) / kStageBytes));
  };
  if (mt == 1 && parts == 1) {
    // Two blocks: each also pays the 1 KiB the driver reserves per block.
    const int two = fitting(std::min(block_limit, sm_bytes / 2 - 1024));
    if (two >= kMinStages) return two;
  }
  const int one = fitting(block_limit);
  return one >= kMinStages ? one : 0;
}

// cuTensorMapEncodeTiled, fetched from the driver through the runtime once (no link against
// libcuda); null where the driver does not have it. (The by-version lookup is CUDA 12.5's; older
// toolkits have the one it deprecates.)
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found{};
#if CUDART_VERSION >= 12050
    const cudaError_t status = cudaGetDriverEntryPointByVersion(
        "cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found);
#else
    const cudaError_t status =
        cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &fn, cudaEnableDefault, &found);
#endif
    if (status != cudaSuccess || found != cudaDriverEntryPointSuccess) {
      cudaGetLastError();
      return PFN_cuTensorMapEncodeTiled_v12000(nullptr);
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  return encode;
}

#ifdef TESSERA_KMEANS_TRACE
// TESSERA_KMEANS_TRACE: the blocks the last wgmma assignment launched, and their timelines written
// to $TESSERA_KMEANS_TRACE_FILE at exit (kTraceSlots little-endian 64-bit values a block).
int64_t& traced_blocks() {
  static int64_t blocks = 0;
  return blocks;
}
void write_assign_trace() {
  const char* path = std::getenv("TESSERA_KMEANS_TRACE_FILE");
  if (path == nullptr || cudaDeviceSynchronize() != cudaSuccess) return;
  const int64_t blocks = std::min<int64_t>(traced_blocks(), kTraceBlocks);
  std::vector<unsigned long long> slots(size_t(blocks) * kTraceSlots);
  if (cudaMemcpyFromSymbol(slots.data(), g_assign_trace, slots.size() * sizeof(slots[0])) !=
      cudaSuccess) {
    return;
  }
  if (FILE* f = std::fopen(path, "wb")) {
    std::fwrite(slots.data(), sizeof(slots[0]), slots.size(), f);
    std::fclose(f);
  }
}
#endif

// Whether assignments run on the wgmma kernel: the build holds sm_90a code and the device runs
// it (probed once), unless TESSERA_KMEANS_KERNEL=mma_sync asks for the portable kernel
// (=wgmma128 / =wgmma256 pin the wgmma kernel's block size; tests use all three).
bool use_wgmma() {
  static const bool available = [] {
    int* flag = nullptr;
    int host = 0;
    if (cudaMalloc(&flag, sizeof(int)) != cudaSuccess) return false;
    wgmma_probe_kernel<<<1, 1>>>(flag);
    const bool ok = cudaMemcpy(&host, flag, sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess;
    cudaFree(flag);
    cudaGetLastError();  // a build without sm_90a code for this device: no kernel image, false
    return ok && host == 1;
  }();
  const char* force = std::getenv("TESSERA_KMEANS_KERNEL");
  return available && !(force && std::string(force) == "mma_sync");
}

// The shared memory a block may opt in to on the current device. TESSERA_KMEANS_SMEM_OPTIN
// lowers it (tests: an H100 then plans as a GPU with less, such as the 99 KiB of sm_86/89/120);
// values under 48 KiB, the default every GPU allows, are ignored.
int max_smem_optin() {
  int dev = 0, bytes = 0;
  TSR_CUDA_CHECK(cudaGetDevice(&dev));
  TSR_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  if (const char* cap = std::getenv("TESSERA_KMEANS_SMEM_OPTIN")) {
    const long v = std::strtol(cap, nullptr, 10);
    if (v >= 48 * 1024 && v < bytes) bytes = int(v);
  }
  return bytes;
}

// Dynamic shared memory assign_kernel may take: the opt-in less 1 KiB for its static shared memory.
size_t assign_smem_limit() { return size_t(std::max(0, max_smem_optin() - 1024)); }

}  // namespace

// The widest D assign_kernel takes on this device: any up to kMaxDimension when the streaming
// (kWide) form fits its shared memory, else the widest resident point tile that fits (0: none).
template <class V>
int64_t max_dimension() {
  constexpr int kBk = Tile<V>::kBk;
  const size_t limit = assign_smem_limit();
  if (assign_smem_bytes<V>(kBk, true) <= limit) return kMaxDimension;
  int64_t widest = 0;
  while (assign_smem_bytes<V>(int(widest + kBk)) <= limit) widest += kBk;
  return widest;
}

// Refuses points wider than this device's GPU path takes (max_dimension), naming why.
template <class V>
void check_max_dimension(int64_t d, const char* what) {
  TSR_CHECK(d <= kMaxDimension, what, ": D = ", d, " exceeds ", kMaxDimension,
            ", the widest points the GPU path takes");
  const int64_t widest = max_dimension<V>();
  if (d <= widest) return;
  TSR_FAIL(what, ": D = ", d, " needs the streaming assignment kernel, whose ",
           assign_smem_bytes<V>(Tile<V>::kBk, true) / 1024, " KiB of shared memory a block this GPU "
           "does not allow (", assign_smem_limit() / 1024, " KiB); the GPU path here takes D up to ", widest);
}

namespace {

MetricCode metric_code(KmeansMetric m) {
  switch (m) {
    case KmeansMetric::l2:
      return kL2;
    case KmeansMetric::cosine:
      return kCosine;
    case KmeansMetric::inner_product:
      return kInnerProduct;
  }
  return kL2;
}

// Scratch carved from one ctx.workspace() block (reused across calls, so a fit allocates only
// its results). A first pass with no base sizes it; every piece is 256-byte aligned.
class Arena {
 public:
  explicit Arena(void* base = nullptr) : base_(static_cast<char*>(base)) {}
  template <class T>
  T* take(int64_t n) {
    const size_t at = used_;
    used_ += (sizeof(T) * size_t(std::max<int64_t>(n, 1)) + 255) / 256 * 256;
    return base_ ? reinterpret_cast<T*>(base_ + at) : nullptr;
  }
  size_t used() const { return used_; }

 private:
  char* base_;
  size_t used_ = 0;
};

// Runs layout(arena) twice: to size the workspace, then to hand out its pieces.
template <class Layout>
void carve_workspace(Context& ctx, Layout&& layout) {
  Arena sizing;
  layout(sizing);
  Arena arena(ctx.workspace(sizing.used()));
  layout(arena);
}

// Copies centroids [B, k, d] given anywhere (any ld and batch stride) into dst, contiguous.
void copy_centroids(const BatchedDenseView<const float>& g, float* dst, cudaStream_t stream) {
  const size_t row = sizeof(float) * size_t(g.cols);
  if (g.batch_stride == g.rows * g.ld) {  // one pitched copy of all B * k rows
    TSR_CUDA_CHECK(cudaMemcpy2DAsync(dst, row, g.data, sizeof(float) * size_t(g.ld), row,
                                     size_t(g.batch * g.rows), cudaMemcpyDefault, stream));
    return;
  }
  for (int64_t b = 0; b < g.batch; ++b) {
    TSR_CUDA_CHECK(cudaMemcpy2DAsync(dst + b * g.rows * g.cols, row, g.data + b * g.batch_stride,
                                     sizeof(float) * size_t(g.ld), row, size_t(g.rows),
                                     cudaMemcpyDefault, stream));
  }
}

// A batch's shapes and the tables every stage reads: the point norms and the centroid table.
template <class V>
struct DeviceProblem {
  using Elem = typename Tile<V>::Elem;
  BatchedDenseView<const V> x;
  int64_t k = 0, k_pad = 0, d_pad = 0, tiles = 0;
  MetricCode metric = kL2;
  // f32 distances at f32 precision (3xTF32): assign_wgmma_kernel<float, 1, true> when split,
  // else assign_kernel<float, true, wide>
  bool exact = false;
  bool wide = false;                     // D too wide for a resident point tile: kWide
  int wgmma_mt = 0;                      // assign_wgmma_kernel<V, wgmma_mt>, or 0: assign_kernel
  int wgmma_ring = 0;                    // its ring stages
  int prefetch_ahead = 0;                // AssignArgs::prefetch_ahead
  bool score_keys = false;               // L2 on the wgmma kernel: its kKeys form
  // A fit's first assignment can compute the point norms (fused_norms_kernel) instead of
  // point_norms_kernel: score keys (l2) on the 128-point wgmma kernel, 16-bit rows with 16-byte
  // alignment.
  bool fused_norms = false;
  int points_per_block = kBM;
  float* x_norms = nullptr;              // [B * n] (l2, cosine)
  Elem* table = nullptr;                 // [B, k_pad, d_pad] (split: twice that)
  float* c_half = nullptr;               // [B, k_pad]
  // [6]: first bad point element, zero point, bad centroid element, zero centroid, huge point,
  // huge centroid
  unsigned long long* flags = nullptr;

  // exact_f32: f32 inputs keep f32 precision (KmeansOptions::exact_f32); no effect on 16-bit.
  DeviceProblem(BatchedDenseView<const V> points, int64_t clusters, KmeansMetric m,
                const char* what, bool exact_f32 = false)
      : x(points), k(clusters), metric(metric_code(m)),
        exact(std::is_same_v<V, float> && exact_f32) {
    TSR_CHECK(x.batch * x.rows <= int64_t(INT32_MAX), what, ": B * N = ", x.batch * x.rows,
              " points exceed the GPU path's int32 point indices");
    TSR_CHECK(x.batch * k <= int64_t(INT32_MAX) / 2, what, ": B * K = ", x.batch * k,
              " clusters exceed the GPU path's int32 cluster keys");
    check_max_dimension<V>(x.cols, what);
    k_pad = round_up(k, kBN);
    d_pad = round_up(x.cols, Tile<V>::kBk);
    wide = assign_smem_bytes<V>(int(d_pad)) > assign_smem_limit();
    // The wgmma kernel when its ring fits (128-point blocks need less than 256-point ones),
    // else the mma.sync kernel. Exact f32: the 3xTF32 wgmma kernel when its doubled point tile
    // and kMinStages fit (D <= 160 with 227 KiB), else the mma.sync kernel's own split.
    int sms = 0;  // set where the wgmma kernel is considered
    if (!wide && use_wgmma()) {
      const size_t limit = size_t(max_smem_optin());
      int dev = 0, sm_bytes = 0;
      TSR_CUDA_CHECK(cudaGetDevice(&dev));
      TSR_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
      TSR_CUDA_CHECK(
          cudaDeviceGetAttribute(&sm_bytes, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev));
      if (exact) {
        const int split_stages = wgmma_stages<V>(int(d_pad), 1, limit, size_t(sm_bytes), 2);
        if (split_stages > 0) wgmma_mt = 1, wgmma_ring = split_stages;
      } else {
        choose_block_size(limit, size_t(sm_bytes), sms);
      }
    }
    points_per_block = wgmma_mt == 2 ? 256 : kBM;
    // L2 distances are never negative, so the wgmma kernel folds them as integer keys
    // (TESSERA_KMEANS_KEYS=0: the float fold, for comparisons).
    const char* keys_env = std::getenv("TESSERA_KMEANS_KEYS");
    score_keys = metric == kL2 && !split() && !(keys_env && std::string(keys_env) == "0");
    // (TESSERA_KMEANS_FUSED_NORMS=0: the separate pass, for comparisons and tests.)
    const char* fused_env = std::getenv("TESSERA_KMEANS_FUSED_NORMS");
    fused_norms = !std::is_same_v<V, float> && score_keys && wgmma_mt == 1 &&
                  rows_16b_aligned(x) && !(fused_env && std::string(fused_env) == "0");
    tiles = (x.rows + points_per_block - 1) / points_per_block;
    // Outside any stream capture: the kernels' shared memory above the default 48 KiB.
    const void* kernel = wgmma_mt != 0 ? reinterpret_cast<const void*>(wgmma_kernel())
                                       : reinterpret_cast<const void*>(mma_sync_kernel());
    TSR_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        int(assign_kernel_smem())));
    if (fused_norms) {
      TSR_CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(fused_norms_kernel()),
                                          cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          int(assign_kernel_smem())));
    }
    // The wgmma kernel prefetches one wave of resident blocks ahead (TESSERA_KMEANS_PREFETCH=0:
    // off, for comparisons).
    const char* prefetch_env = std::getenv("TESSERA_KMEANS_PREFETCH");
    const bool prefetch_off = prefetch_env && std::string(prefetch_env) == "0";
    if (wgmma_mt != 0 && rows_16b_aligned(x) && !prefetch_off) {
      int per_sm = 0;
      TSR_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
          &per_sm, wgmma_kernel(), kWgmmaThreads, assign_kernel_smem()));
      prefetch_ahead = per_sm * sms;
    }
  }

  // Exact f32 on the wgmma kernel: its point tile and table hold tf32 high and low parts.
  bool split() const { return exact && wgmma_mt != 0; }

  // The wgmma kernel this problem runs (wgmma_mt != 0): its block size, and the split form.
  using WgmmaKernelFn = void (*)(const V*, AssignArgs, int, CUtensorMap);
  WgmmaKernelFn wgmma_kernel() const {
    if constexpr (std::is_same_v<V, float>) {
      if (split()) return assign_wgmma_kernel<float, 1, true>;
    }
    if (score_keys) {
      return wgmma_mt == 2 ? assign_wgmma_kernel<V, 2, false, true>
                           : assign_wgmma_kernel<V, 1, false, true>;
    }
    return wgmma_mt == 2 ? assign_wgmma_kernel<V, 2> : assign_wgmma_kernel<V, 1>;
  }

  // The first assignment's kernel when fused_norms: wgmma_kernel() computing the norms.
  WgmmaKernelFn fused_norms_kernel() const {
    if constexpr (std::is_same_v<V, float>) {
      return nullptr;  // never fused_norms
    } else {
      return assign_wgmma_kernel<V, 1, false, true, true>;
    }
  }

  // Dynamic shared memory of the assignment kernel this problem runs.
  size_t assign_kernel_smem() const {
    if (wgmma_mt == 0) return assign_smem_bytes<V>(int(d_pad), wide);
    return wgmma_smem_bytes<V>(int(d_pad), wgmma_mt, wgmma_ring, split() ? 2 : 1);
  }

  // assign_kernel in the form this problem needs (exact, wide).
  using AssignKernelFn = void (*)(const V*, AssignArgs);
  AssignKernelFn mma_sync_kernel() const {
    if constexpr (std::is_same_v<V, float>) {
      if (exact) return wide ? assign_kernel<float, true, true> : assign_kernel<float, true, false>;
    }
    return wide ? assign_kernel<V, false, true> : assign_kernel<V, false, false>;
  }

  // The wgmma kernel's block size and ring for plain (not exact) inputs.
  void choose_block_size(size_t limit, size_t sm_bytes, int sms) {
    const int stages2 = wgmma_stages<V>(int(d_pad), 2, limit, size_t(sm_bytes));
    const int stages1 = wgmma_stages<V>(int(d_pad), 1, limit, size_t(sm_bytes));
    // 16-bit inputs: 128-point blocks, two per SM (measured 10-15% faster than 256 on an
    // H200). tf32 (half the MMA rate per byte of centroids): 256-point blocks when they fill
    // the GPU, for half the centroid traffic per multiply-add (7-9% faster).
    const int64_t big_blocks = x.batch * ((x.rows + 255) / 256);
    if (std::is_same_v<V, float> && stages2 > 0 && big_blocks >= 2 * sms) {
      wgmma_mt = 2, wgmma_ring = stages2;
    } else if (stages1 > 0) {
      wgmma_mt = 1, wgmma_ring = stages1;
    }
    if (const char* force = std::getenv("TESSERA_KMEANS_KERNEL")) {  // tests pin one kernel
      const std::string f = force;
      if (f == "wgmma128" && stages1 > 0) wgmma_mt = 1, wgmma_ring = stages1;
      if (f == "wgmma256" && stages2 > 0) wgmma_mt = 2, wgmma_ring = stages2;
    }
  }

  // The centroid table's elements: [B, k_pad, d_pad], twice that for the split (hi/lo) form.
  int64_t table_elems() const { return x.batch * k_pad * d_pad * (split() ? 2 : 1); }

  void carve(Arena& a) {
    x_norms = a.take<float>(x.batch * x.rows);
    table = a.take<Elem>(table_elems());
    c_half = a.take<float>(x.batch * k_pad);
    flags = a.take<unsigned long long>(6);
  }

  // Point norms and, when centroids is set (the caller's [B, k, d]), their check and cosine
  // scaling; one synchronisation, then errors naming the first offender.
  void norms_and_checks(cudaStream_t stream, const char* what, float* centroids,
                        const char* what_centroids = nullptr) {
    launch_checks(stream, centroids, /*points=*/true);
    report_checks(stream, what, what_centroids);
  }

  // The checks' kernels, without waiting: point norms and checks unless points is false (a fit
  // whose first assignment computes them: fused_norms), the centroids' when given.
  void launch_checks(cudaStream_t stream, float* centroids, bool points) {
    TSR_CUDA_CHECK(cudaMemsetAsync(flags, 0xff, 6 * sizeof(unsigned long long), stream));
    const int64_t total = x.batch * x.rows;
    if (points && total > 0) {
      point_norms_kernel<V><<<blocks_for(total * kNormLanes), kThreads, 0, stream>>>(
          x.data, x.batch, x.rows, int(x.cols), x.ld, x.batch_stride, rows_16b_aligned(x),
          metric, x_norms, flags, flags + 1, flags + 4);
      TSR_CUDA_CHECK_LAUNCH("kmeans point norms");
    }
    if (centroids) {
      check_centroids_kernel<<<warp_blocks(x.batch * k), kThreads, 0, stream>>>(
          centroids, x.batch * k, int(x.cols), metric == kCosine, flags + 2, flags + 3,
          flags + 5);
      TSR_CUDA_CHECK_LAUNCH("kmeans check centroids");
    }
  }

  // Waits for the checks launched before and fails naming the first offender.
  void report_checks(cudaStream_t stream, const char* what, const char* what_centroids) {
    unsigned long long host[6];
    TSR_CUDA_CHECK(cudaMemcpyAsync(host, flags, sizeof(host), cudaMemcpyDeviceToHost, stream));
    TSR_CUDA_CHECK(cudaStreamSynchronize(stream));
    const int64_t n = x.rows, d = x.cols;
    const char* cwhat = what_centroids ? what_centroids : what;
    if (host[0] != ~0ull) {
      const int64_t g = int64_t(host[0] / d);
      TSR_FAIL(what, ": X[", g / n, "][", g % n, "][", int64_t(host[0] % d),
               "] is NaN or Inf; points must be finite");
    }
    TSR_CHECK(host[4] == ~0ull, what, ": X[", int64_t(host[4]) / n, "][", int64_t(host[4]) % n,
              "] has a squared norm over ", kMaxSquaredNorm,
              ", beyond what f32 distances can hold; scale the points down");
    TSR_CHECK(host[1] == ~0ull, what, ": X[", int64_t(host[1]) / n, "][", int64_t(host[1]) % n,
              "] is the zero vector, which has no direction under the cosine metric");
    if (host[2] != ~0ull) {
      const int64_t row = int64_t(host[2] / d);
      TSR_FAIL(cwhat, ": centroid [", row / k, "][", row % k, "][", int64_t(host[2] % d),
               "] is NaN or Inf; centroids must be finite");
    }
    TSR_CHECK(host[5] == ~0ull, cwhat, ": centroid [", int64_t(host[5]) / k, "][",
              int64_t(host[5]) % k, "] has a squared norm over ", kMaxSquaredNorm,
              ", beyond what f32 distances can hold");
    TSR_CHECK(host[3] == ~0ull, cwhat, ": centroid [", int64_t(host[3]) / k, "][",
              int64_t(host[3]) % k,
              "] is the zero vector, which has no direction under the cosine metric");
  }

  const float* inv_norms_or_null() const { return metric == kCosine ? x_norms : nullptr; }

  void build_table(cudaStream_t stream, const float* centroids, const int* active,
                   const int* rows_per_problem = nullptr) {
    table_kernel<V><<<warp_blocks(x.batch * k_pad), kThreads, 0, stream>>>(
        centroids, int(x.batch), int(k), int(x.cols), int(k_pad), int(d_pad), metric == kL2,
        /*tiled=*/wgmma_mt != 0, exact, active, rows_per_problem, table, c_half);
    TSR_CUDA_CHECK_LAUNCH("kmeans centroid table");
  }

  AssignArgs assign_args() const {
    AssignArgs a;
    a.n = x.rows;
    a.ld = x.ld;
    a.batch_stride = x.batch_stride;
    a.d = int(x.cols);
    a.k = int(k);
    a.k_pad = int(k_pad);
    a.d_pad = int(d_pad);
    a.tiles = int(tiles);
    a.batch = int(x.batch);
    a.vector_loads = rows_16b_aligned(x);
    a.metric = metric;
    a.x_norms = x_norms;
    a.table = table;
    a.c_half = c_half;
    a.prefetch_ahead = prefetch_ahead;
    a.check_flags = flags;
    return a;
  }

  // The wgmma kernel's point rows (16-bit rows, 16-byte aligned: AssignArgs::vector_loads) as a
  // tensor map over X [B][n][D]: boxes of one column block (Tile<V>::kBk elements, 128 bytes) by
  // one consumer warpgroup's rows, 128-byte swizzled as the MMAs read them. False (the kernel
  // then copies the rows by cp.async) for f32, problems whose batch stride the map does not
  // take (overlapping problems, 2^40 bytes), a driver without the encoder, or
  // TESSERA_KMEANS_TENSOR_ROWS=0 (for comparisons and tests).
  bool point_row_map(CUtensorMap& map) const {
    if constexpr (std::is_same_v<V, float>) {
      return false;
    } else {
      const char* env = std::getenv("TESSERA_KMEANS_TENSOR_ROWS");
      if (wgmma_mt == 0 || x.rows == 0 || x.batch == 0 || (env && std::string(env) == "0")) return false;
      // One problem: any stride past its rows (the map wants one, a multiple of 16 bytes).
      const int64_t batch_stride = x.batch > 1 ? x.batch_stride : x.rows * x.ld;
      constexpr int64_t kMaxStride = (int64_t(1) << 40) / int64_t(sizeof(V));
      if (batch_stride < x.rows * x.ld || batch_stride >= kMaxStride) return false;
      const PFN_cuTensorMapEncodeTiled_v12000 encode = tensor_map_encoder();
      if (encode == nullptr) return false;
      const cuuint64_t dims[3] = {cuuint64_t(x.cols), cuuint64_t(x.rows), cuuint64_t(x.batch)};
      const cuuint64_t strides[2] = {cuuint64_t(x.ld) * sizeof(V),
                                     cuuint64_t(batch_stride) * sizeof(V)};
      const cuuint32_t box[3] = {cuuint32_t(Tile<V>::kBk), cuuint32_t(64 * wgmma_mt), 1};
      const cuuint32_t unit[3] = {1, 1, 1};
      const CUtensorMapDataType type = std::is_same_v<V, bf16> ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                                               : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
      const CUresult status = encode(&map, type, 3, const_cast<V*>(x.data), dims, strides, box,
                                     unit, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                     CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                     CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
      // Inside the limits checked above a refusal is a defect here, not a property of the input.
      TSR_CHECK(status == CUDA_SUCCESS, "kmeans: the driver refused the point rows' tensor map (",
                "error ", int(status), ", B = ", x.batch, ", n = ", x.rows, ", D = ", x.cols,
                ", ld = ", x.ld, ")");
      return true;
    }
  }

  // with_norms (fused_norms only): the kernel that computes the point norms and their checks.
  void launch_assign(cudaStream_t stream, const AssignArgs& a, bool with_norms = false) const {
    const int64_t blocks = x.batch * tiles;
    TSR_CHECK(blocks <= int64_t(INT32_MAX), "kmeans: ", blocks, " point tiles exceed a launch");
    TSR_CHECK(!with_norms || fused_norms, "kmeans: the norms computed in an assignment that "
              "cannot compute them");
    if (wgmma_mt != 0) {
      const WgmmaKernelFn kernel = with_norms ? fused_norms_kernel() : wgmma_kernel();
      AssignArgs args = a;
      CUtensorMap row_map{};  // unused unless tensor_rows
      args.tensor_rows = a.vector_loads && point_row_map(row_map);
      kernel<<<unsigned(blocks), kWgmmaThreads, assign_kernel_smem(), stream>>>(x.data, args,
                                                                              wgmma_ring, row_map);
#ifdef TESSERA_KMEANS_TRACE
      traced_blocks() = blocks;
      static const bool written_at_exit = std::atexit(write_assign_trace) == 0;
      (void)written_at_exit;
#endif
    } else {
      mma_sync_kernel()<<<unsigned(blocks), kAssignThreads, assign_kernel_smem(), stream>>>(x.data, a);
    }
    TSR_CUDA_CHECK_LAUNCH("kmeans assign");
  }
};

// Fits of fewer iterations than this launch their stages directly; longer ones capture one
// iteration into a CUDA graph and replay it (the capture costs more than a few launches).
constexpr int kGraphFromIterations = 4;
constexpr int kHistoryRows = 4096;  // inertia history entries kept per problem

}  // namespace

template <class V>
void assign(Context& ctx, BatchedDenseView<const V> x, BatchedDenseView<const float> centroids,
            KmeansMetric metric, int32_t* labels, float* distances, bool exact_f32) {
  if (x.batch * x.rows == 0) return;
  // The outputs must be device memory: a host pointer would fault the whole context.
  for (const void* out : {static_cast<const void*>(labels), static_cast<const void*>(distances)}) {
    if (!out) continue;
    cudaPointerAttributes attr{};
    const bool device = cudaPointerGetAttributes(&attr, out) == cudaSuccess &&
                        (attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged);
    cudaGetLastError();  // a host pointer may leave an error behind on older drivers
    TSR_CHECK(device, "kmeans_assign: X is in device memory, so labels",
              out == distances ? " and distances" : "", " must be too (got a host pointer)");
  }
  const auto stream = static_cast<cudaStream_t>(ctx.stream());
  const int64_t k = centroids.rows;
  DeviceProblem<V> p(x, k, metric, "kmeans_assign", exact_f32);
  float* c = nullptr;
  carve_workspace(ctx, [&](Arena& a) {
    p.carve(a);
    c = a.take<float>(x.batch * k * x.cols);
  });
  copy_centroids(centroids, c, stream);
  p.norms_and_checks(stream, "kmeans_assign", c);
  p.build_table(stream, c, nullptr);
  AssignArgs a = p.assign_args();
  a.labels = labels;
  a.distances = distances;
  p.launch_assign(stream, a);
  TSR_CUDA_CHECK(cudaStreamSynchronize(stream));
}

template <class V>
void fit(Context& ctx, BatchedDenseView<const V> x, int64_t k, const KmeansOptions& o,
         const InitialCentroids& init, KmeansResult& r) {
  const auto stream = static_cast<cudaStream_t>(ctx.stream());
  const int64_t batch = x.batch, n = x.rows, d = x.cols, total = batch * n;
  const int clusters = int(batch * k);
  if (batch == 0) {
    r = KmeansResult{};
    r.k = k;
    r.dim = d;
    r.points = n;
    return;
  }

  DeviceProblem<V> p(x, k, o.metric, "kmeans", o.exact_f32);
  const int64_t max_chunks = (total + kChunk - 1) / kChunk + clusters;
  // 4-wide row loads in the update (8 or 16 bytes): D, ld and the batch stride multiples of 4.
  const bool vec4 = d % 4 == 0 && x.ld % 4 == 0 && x.batch_stride % 4 == 0 &&
                    reinterpret_cast<uintptr_t>(x.data) % (4 * sizeof(V)) == 0;
  const bool short_keys = clusters <= 65536;  // 16-bit sort keys
  // Label-major keys (the label alone; slot_of_cluster) where they save a radix pass of 8 bits:
  // K <= 256 with B * K > 256 (TESSERA_KMEANS_LABEL_KEYS=0: b * K + label, for comparisons).
  const char* label_env = std::getenv("TESSERA_KMEANS_LABEL_KEYS");
  const bool label_keys =
      k <= 256 && clusters > 256 && !(label_env && std::string(label_env) == "0");
  const int label_batch = label_keys ? int(batch) : 0;
  int key_bits = 1;
  while ((int64_t(1) << key_bits) < (label_keys ? k : clusters)) ++key_bits;
  size_t sort_bytes = 0;
  TSR_CUDA_CHECK(sort_pairs(nullptr, sort_bytes, nullptr, nullptr, nullptr, nullptr, total,
                            key_bits, short_keys, stream));
  const size_t temp_bytes = std::max(sort_bytes, segment_temp_bytes(clusters, stream));
  // Inertia history kept on the device: the first kHistoryRows assignments (iterations past it
  // still run and converge; only their history entries are dropped).
  const int history_rows = std::min(o.max_iterations, kHistoryRows - 1) + 1;
  float *distances, *partial, *start;
  int32_t *keys, *sorted_keys, *points, *order, *offsets, *chunk_counts, *chunk_offsets, *counts32;
  double *tile_inertia, *last_inertia, *history;
  int *tile_changed, *active, *iterations, *scalars;
  int64_t* seed_rows;
  void* temp;
  carve_workspace(ctx, [&](Arena& a) {
    p.carve(a);
    distances = a.take<float>(total);
    keys = a.take<int32_t>(total);
    sorted_keys = a.take<int32_t>(total);
    points = a.take<int32_t>(total);
    order = a.take<int32_t>(total);
    offsets = a.take<int32_t>(clusters + 1);
    chunk_counts = a.take<int32_t>(clusters + 1);
    chunk_offsets = a.take<int32_t>(clusters + 1);
    counts32 = a.take<int32_t>(clusters);
    partial = a.take<float>(max_chunks * d);
    tile_inertia = a.take<double>(batch * p.tiles);
    tile_changed = a.take<int>(batch * p.tiles);
    active = a.take<int>(batch);
    iterations = a.take<int>(batch);
    last_inertia = a.take<double>(batch);
    history = a.take<double>(int64_t(history_rows) * batch);
    scalars = a.take<int>(3);  // [0]: iteration, [1]: any problem still active, [2]: a ticket
    seed_rows = a.take<int64_t>(init.rows ? clusters : 0);
    start = a.take<float>(int64_t(clusters) * d);  // the initial centroids, checked
    temp = a.take<unsigned char>(int64_t(temp_bytes));
  });
  int* any_active = scalars + 1;

  AssignArgs a = p.assign_args();
  a.active = active;
  a.distances = distances;
  a.sort_keys = keys;
  a.short_sort_keys = short_keys;
  a.label_sort_keys = label_keys;
  a.tile_inertia = tile_inertia;
  a.tile_changed = tile_changed;
  // About 8 tiles a thread (a warp held 8192 tiles, 1M points, for 40 us), 32 to 1024 threads.
  const unsigned converge_threads =
      unsigned(std::min<int64_t>(1024, round_up(std::max<int64_t>(1, p.tiles / 8), kWarp)));
  auto assign_and_converge = [&](const AssignArgs& args, bool with_norms) {
    p.launch_assign(stream, args, with_norms);
    converge_kernel<<<unsigned(batch), converge_threads, 0, stream>>>(
        tile_inertia, tile_changed, int(p.tiles), o.tolerance, o.fixed_iterations, active,
        last_inertia, history, history_rows, iterations, scalars);
    TSR_CUDA_CHECK_LAUNCH("kmeans converge");
  };
  auto reset_loop_state = [&]() {
    TSR_CUDA_CHECK(cudaMemsetAsync(active, 0xff, sizeof(int) * size_t(batch), stream));  // -1: on
    TSR_CUDA_CHECK(cudaMemsetAsync(iterations, 0, sizeof(int) * size_t(batch), stream));
    TSR_CUDA_CHECK(cudaMemsetAsync(scalars, 0, 3 * sizeof(int), stream));
  };

  // Initial centroids, checks, norms: all before r is touched, so a failed fit leaves it as it
  // was (it may hold the warm start's centroids). With fused norms the first assignment computes
  // the point norms and checks (one read of X less), so it runs here, into the workspace: its
  // labels into `order` (free until the first sort), the table from `start`.
  const bool fused_norms = p.fused_norms;
  if (init.rows) {
    TSR_CUDA_CHECK(cudaMemcpyAsync(seed_rows, init.rows, sizeof(int64_t) * size_t(clusters),
                                   cudaMemcpyHostToDevice, stream));
    if (fused_norms) {
      p.launch_checks(stream, nullptr, /*points=*/false);  // l2: the gather needs no norms
    } else {
      p.norms_and_checks(stream, "kmeans", nullptr);  // the gather below scales by the norms
    }
    gather_kernel<V><<<warp_blocks(clusters), kThreads, 0, stream>>>(
        x.data, int(batch), n, int(k), int(d), x.ld, x.batch_stride, seed_rows,
        p.inv_norms_or_null(), start);
    TSR_CUDA_CHECK_LAUNCH("kmeans gather seeds");
  } else {
    copy_centroids(init.given, start, stream);
    if (fused_norms) {
      p.launch_checks(stream, start, /*points=*/false);
    } else {
      p.norms_and_checks(stream, "kmeans", start, "kmeans: initial_centroids");
    }
  }
  if (fused_norms) {
    p.build_table(stream, start, nullptr);
    reset_loop_state();
    TSR_CUDA_CHECK(cudaMemsetAsync(order, 0xff, sizeof(int32_t) * size_t(total), stream));
    AssignArgs first = a;
    first.labels = order;  // read first as the old labels: -1, every label changes
    assign_and_converge(first, /*with_norms=*/true);  // iteration 0: the initial centroids
    p.report_checks(stream, "kmeans", init.rows ? nullptr : "kmeans: initial_centroids");
  }
  // Past the checks, a failure (out of memory, a failed launch) clears r: it never holds a
  // mix of old and new results.
  try {
    // The results own their memory (a previous result's, when the size fits: repeated fits
    // allocate nothing); everything else lives in the context's workspace.
    auto reuse = [](auto& buffer, int64_t size) {
      using T = typename std::decay_t<decltype(buffer)>::value_type;
      if (buffer.space() != MemorySpace::device || int64_t(buffer.size()) != size) {
        buffer = Buffer<T>(size_t(size), MemorySpace::device);
      }
    };
    reuse(r.labels, total);
    reuse(r.centroids, int64_t(clusters) * d);
    reuse(r.counts, clusters);
    r.batch = batch;
    r.k = k;
    r.dim = d;
    r.points = n;
    r.inertia.assign(size_t(batch), 0.0);
    r.inertia_history.assign(size_t(batch), {});
    r.iterations = 0;
    r.assign_seconds = r.update_seconds = 0;
    int32_t* labels = r.labels.data();
    float* centroids = r.centroids.data();
    TSR_CUDA_CHECK(cudaMemcpyAsync(centroids, start, sizeof(float) * size_t(clusters) * size_t(d),
                                   cudaMemcpyDeviceToDevice, stream));
    if (fused_norms) {  // iteration 0 ran above: its labels; the table holds the same centroids
      TSR_CUDA_CHECK(cudaMemcpyAsync(labels, order, sizeof(int32_t) * size_t(total),
                                     cudaMemcpyDeviceToDevice, stream));
    } else {
      p.build_table(stream, centroids, nullptr);
      reset_loop_state();
      TSR_CUDA_CHECK(cudaMemsetAsync(labels, 0xff, sizeof(int32_t) * size_t(total), stream));
    }
    iota_kernel<<<blocks_for(total), kThreads, 0, stream>>>(points, total);
    TSR_CUDA_CHECK_LAUNCH("kmeans iota");
    a.labels = labels;
    auto update = [&]() {
      size_t bytes = temp_bytes;
      TSR_CUDA_CHECK(sort_pairs(temp, bytes, keys, sorted_keys, points, order, total, key_bits,
                                short_keys, stream));
      if (short_keys) {
        segment(stream, reinterpret_cast<const uint16_t*>(sorted_keys), order, int(n),
                label_batch, total, clusters, offsets, chunk_counts, chunk_offsets, temp,
                temp_bytes);
      } else {
        segment(stream, sorted_keys, order, int(n), label_batch, total, clusters, offsets,
                chunk_counts, chunk_offsets, temp, temp_bytes);
      }
      sum_chunks<V>(stream, vec4, x.data, int(n), int(d), int(k), clusters, x.ld, x.batch_stride,
                    order, offsets, chunk_offsets, label_batch, p.inv_norms_or_null(), active,
                    max_chunks, partial);
      finalize_kernel<<<unsigned(clusters), kFinalizeThreads, 0, stream>>>(
          partial, offsets, chunk_offsets, label_batch, clusters, int(k), int(d),
          p.metric == kCosine, active, centroids, counts32);
      TSR_CUDA_CHECK_LAUNCH("kmeans finalize");
      if (o.empty_clusters == EmptyClusters::reseed_farthest) {
        reseed_kernel<V><<<unsigned(batch), kThreads, 0, stream>>>(
            x.data, n, int(k), int(d), x.ld, x.batch_stride, distances, counts32,
            p.inv_norms_or_null(), active, centroids);
        TSR_CUDA_CHECK_LAUNCH("kmeans reseed");
      }
      p.build_table(stream, centroids, active);
    };
    // Iterations of update + assignment; without the final assignment the last one is an update
    // alone (below).
    const int full_iterations = o.final_assignment ? o.max_iterations : o.max_iterations - 1;
    // Every kCheckEvery iterations the host looks at any_active and stops when all converged.
    auto all_converged = [&](int launched) {
      if (o.fixed_iterations || launched % kCheckEvery != 0 || launched >= full_iterations) {
        return false;
      }
      int host_active = 0;
      TSR_CUDA_CHECK(cudaMemcpyAsync(&host_active, any_active, sizeof(int), cudaMemcpyDeviceToHost,
                                     stream));
      TSR_CUDA_CHECK(cudaStreamSynchronize(stream));
      return host_active == 0;
    };

    if (!fused_norms) assign_and_converge(a, false);  // iteration 0: the initial centroids
    int launched = 0;
    if (full_iterations > 0 && o.profile_stages) {  // one by one, with events between the stages
      TSR_CHECK(full_iterations <= kHistoryRows, "kmeans: profile_stages times at most ",
                kHistoryRows, " iterations (max_iterations = ", o.max_iterations, ")");
      struct Events {  // destroyed on every path out
        std::vector<cudaEvent_t> e;
        ~Events() {
          for (cudaEvent_t x : e) cudaEventDestroy(x);
        }
      } owned;
      owned.e.assign(3 * size_t(full_iterations), nullptr);
      std::vector<cudaEvent_t>& events = owned.e;
      for (cudaEvent_t& e : events) TSR_CUDA_CHECK(cudaEventCreate(&e));
      for (; launched < full_iterations; ++launched) {
        TSR_CUDA_CHECK(cudaEventRecord(events[3 * launched], stream));
        update();
        TSR_CUDA_CHECK(cudaEventRecord(events[3 * launched + 1], stream));
        assign_and_converge(a, false);
        TSR_CUDA_CHECK(cudaEventRecord(events[3 * launched + 2], stream));
      }
      TSR_CUDA_CHECK(cudaStreamSynchronize(stream));
      std::vector<double> update_s, assign_s;
      for (int it = 0; it < launched; ++it) {
        float ms = 0;
        TSR_CUDA_CHECK(cudaEventElapsedTime(&ms, events[3 * it], events[3 * it + 1]));
        update_s.push_back(ms * 1e-3);
        TSR_CUDA_CHECK(cudaEventElapsedTime(&ms, events[3 * it + 1], events[3 * it + 2]));
        assign_s.push_back(ms * 1e-3);
      }
      auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
      };
      r.update_seconds = median(update_s);
      r.assign_seconds = median(assign_s);
    } else if (full_iterations > 0 && full_iterations < kGraphFromIterations) {
      while (launched < full_iterations) {
        update();
        assign_and_converge(a, false);
        ++launched;
      }
    } else if (full_iterations > 0) {
      // One iteration, captured once and replayed: no host work or synchronisation inside.
      cudaGraph_t graph = nullptr;
      cudaGraphExec_t exec = nullptr;
      TSR_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
      try {
        update();
        assign_and_converge(a, false);
      } catch (...) {
        cudaStreamEndCapture(stream, &graph);
        if (graph) cudaGraphDestroy(graph);
        throw;
      }
      TSR_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
      const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
      cudaGraphDestroy(graph);
      TSR_CUDA_CHECK(inst);
      try {
        while (launched < full_iterations) {
          TSR_CUDA_CHECK(cudaGraphLaunch(exec, stream));
          if (all_converged(++launched)) break;
        }
      } catch (...) {
        cudaGraphExecDestroy(exec);
        throw;
      }
      cudaGraphExecDestroy(exec);
    }

    std::vector<int> still_active;
    if (!o.final_assignment && o.max_iterations > 0) {  // the last update, for problems going on
      update();
      still_active.resize(static_cast<size_t>(batch));
      TSR_CUDA_CHECK(cudaMemcpyAsync(still_active.data(), active, sizeof(int) * size_t(batch),
                                     cudaMemcpyDeviceToHost, stream));
    }

    // Results: counts of the final labels, per-problem history.
    count_labels(stream, labels, batch, n, k, counts32);
    widen_kernel<<<blocks_for(clusters), kThreads, 0, stream>>>(counts32, clusters,
                                                                r.counts.data());
    TSR_CUDA_CHECK_LAUNCH("kmeans widen counts");
    std::vector<int> iters(static_cast<size_t>(batch));
    std::vector<double> last(static_cast<size_t>(batch));
    const int rows_written = std::min(launched + 1, history_rows);
    std::vector<double> hist(static_cast<size_t>(int64_t(rows_written) * batch));
    TSR_CUDA_CHECK(cudaMemcpyAsync(iters.data(), iterations, sizeof(int) * iters.size(),
                                   cudaMemcpyDeviceToHost, stream));
    TSR_CUDA_CHECK(cudaMemcpyAsync(last.data(), last_inertia, sizeof(double) * last.size(),
                                   cudaMemcpyDeviceToHost, stream));
    TSR_CUDA_CHECK(cudaMemcpyAsync(hist.data(), history, sizeof(double) * hist.size(),
                                   cudaMemcpyDeviceToHost, stream));
    TSR_CUDA_CHECK(cudaStreamSynchronize(stream));
    for (int64_t b = 0; b < batch; ++b) {
      auto& h = r.inertia_history[size_t(b)];
      for (int t = 0; t <= std::min(iters[size_t(b)], rows_written - 1); ++t) {
        h.push_back(hist[size_t(t * batch + b)]);
      }
      r.inertia[size_t(b)] = last[size_t(b)];
      // Without the final assignment a problem still going on had one more update.
      const int updates = still_active.empty() || !still_active[size_t(b)] ? iters[size_t(b)]
                                                                           : o.max_iterations;
      r.iterations = std::max(r.iterations, updates);
    }
  } catch (...) {
    r = KmeansResult{};
    throw;
  }
}

template <class V>
std::vector<Candidates> parallel_candidates(Context& ctx, BatchedDenseView<const V> x, int64_t k,
                                            KmeansMetric metric,
                                            const std::vector<uint64_t>& seeds, int rounds,
                                            double oversampling) {
  const auto stream = static_cast<cudaStream_t>(ctx.stream());
  const int64_t batch = x.batch, n = x.rows, d = x.cols, total = batch * n;
  std::vector<Candidates> out(static_cast<size_t>(batch));
  if (batch == 0) return out;
  // Distances for D^2 sampling: squared Euclidean, on the unit sphere for cosine (1 - cos is
  // half of it); inner product seeds on the points as they are, like the CPU.
  const KmeansMetric seeding = metric == KmeansMetric::cosine ? metric : KmeansMetric::l2;
  Buffer<float> norms = device_buffer<float>(total), d2 = device_buffer<float>(total);
  Buffer<float> min_d2 = device_buffer<float>(total);
  Buffer<int32_t> labels = device_buffer<int32_t>(total), points = device_buffer<int32_t>(total);
  Buffer<int32_t> flags = device_buffer<int32_t>(total), selected = device_buffer<int32_t>(total);
  Buffer<int32_t> selected_count = device_buffer<int32_t>(1);
  Buffer<double> phi = device_buffer<double>(batch);
  const Buffer<uint64_t> seeds_dev(seeds, MemorySpace::device);
  {
    DeviceProblem<V> check(x, 1, seeding, "kmeans");
    unsigned long long* flags_buf = nullptr;
    carve_workspace(ctx, [&](Arena& a) { flags_buf = a.take<unsigned long long>(6); });
    check.x_norms = norms.data();
    check.flags = flags_buf;
    check.norms_and_checks(stream, "kmeans", nullptr);  // NaN / zero vectors: clear errors
  }
  iota_kernel<<<blocks_for(total), kThreads, 0, stream>>>(points.data(), total);
  TSR_CUDA_CHECK_LAUNCH("kmeans|| iota");

  // The rows rows[b] (per problem; shorter lists padded) as centroids, and every point's
  // nearest among them: labels and squared distances d2.
  auto assign_to = [&](const std::vector<std::vector<int64_t>>& rows) {
    size_t most = 1;
    for (const auto& r : rows) most = std::max(most, r.size());
    const int64_t m = int64_t(most);
    std::vector<int64_t> flat(static_cast<size_t>(batch * m));
    std::vector<int> counts(static_cast<size_t>(batch));
    for (int64_t b = 0; b < batch; ++b) {
      const auto& r = rows[size_t(b)];
      counts[size_t(b)] = int(r.size());
      for (int64_t j = 0; j < m; ++j) flat[size_t(b * m + j)] = r.empty() ? 0 : r[size_t(std::min<int64_t>(j, int64_t(r.size()) - 1))];
    }
    const Buffer<int64_t> rows_dev(flat, MemorySpace::device);
    const Buffer<int> counts_dev(counts, MemorySpace::device);
    Buffer<float> centroids = device_buffer<float>(batch * m * d);
    DeviceProblem<V> p(x, m, seeding, "kmeans");
    Buffer<typename Tile<V>::Elem> table = device_buffer<typename Tile<V>::Elem>(p.table_elems());
    Buffer<float> c_half = device_buffer<float>(batch * p.k_pad);
    p.x_norms = norms.data();
    p.table = table.data();
    p.c_half = c_half.data();
    gather_kernel<V><<<warp_blocks(batch * m), kThreads, 0, stream>>>(
        x.data, int(batch), n, int(m), int(d), x.ld, x.batch_stride, rows_dev.data(),
        p.inv_norms_or_null(), centroids.data());
    TSR_CUDA_CHECK_LAUNCH("kmeans|| gather");
    p.build_table(stream, centroids.data(), nullptr, counts_dev.data());
    AssignArgs a = p.assign_args();
    a.labels = labels.data();
    a.distances = d2.data();
    p.launch_assign(stream, a);
    TSR_CUDA_CHECK(cudaStreamSynchronize(stream));  // the temporaries above go out of scope
    return m;
  };

  // Round 0: one uniformly drawn point per problem.
  std::vector<std::vector<int64_t>> cand(static_cast<size_t>(batch)), fresh(static_cast<size_t>(batch));
  std::vector<std::unordered_set<int64_t>> taken(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t first = int64_t(seeds[size_t(b)] % uint64_t(n));
    cand[size_t(b)] = fresh[size_t(b)] = {first};
    taken[size_t(b)].insert(first);
  }
  assign_to(fresh);
  merge_min_kernel<<<blocks_for(total), kThreads, 0, stream>>>(d2.data(), min_d2.data(), total, true);
  TSR_CUDA_CHECK_LAUNCH("kmeans|| merge");
  size_t select_bytes = 0;
  TSR_CUDA_CHECK(cub::DeviceSelect::Flagged(nullptr, select_bytes, points.data(), flags.data(),
                                            selected.data(), selected_count.data(), int(total),
                                            stream));
  Buffer<unsigned char> select_temp = device_buffer<unsigned char>(int64_t(select_bytes));
  const double ell = oversampling * double(k);
  for (int round = 1; round <= rounds; ++round) {
    problem_sum_kernel<<<unsigned(batch), kThreads, 0, stream>>>(min_d2.data(), n, phi.data());
    TSR_CUDA_CHECK_LAUNCH("kmeans|| phi");
    sample_kernel<<<blocks_for(total), kThreads, 0, stream>>>(
        min_d2.data(), total, n, phi.data(), ell, seeds_dev.data(), round, flags.data());
    TSR_CUDA_CHECK_LAUNCH("kmeans|| sample");
    size_t bytes = select_bytes;
    TSR_CUDA_CHECK(cub::DeviceSelect::Flagged(select_temp.data(), bytes, points.data(),
                                              flags.data(), selected.data(),
                                              selected_count.data(), int(total), stream));
    int count = 0;
    TSR_CUDA_CHECK(cudaMemcpyAsync(&count, selected_count.data(), sizeof(int),
                                   cudaMemcpyDeviceToHost, stream));
    TSR_CUDA_CHECK(cudaStreamSynchronize(stream));
    std::vector<int32_t> picked(static_cast<size_t>(count));
    if (count > 0) {
      TSR_CUDA_CHECK(cudaMemcpy(picked.data(), selected.data(), sizeof(int32_t) * size_t(count),
                                cudaMemcpyDeviceToHost));
    }
    bool any = false;
    for (auto& f : fresh) f.clear();
    for (const int32_t g : picked) {  // in point order: deterministic lists
      const int64_t b = g / n, i = g % n;
      if (taken[size_t(b)].insert(i).second) {
        fresh[size_t(b)].push_back(i);
        cand[size_t(b)].push_back(i);
        any = true;
      }
    }
    if (!any) break;
    assign_to(fresh);
    merge_min_kernel<<<blocks_for(total), kThreads, 0, stream>>>(d2.data(), min_d2.data(), total,
                                                                false);
    TSR_CUDA_CHECK_LAUNCH("kmeans|| merge");
  }
  // At least k candidates (duplicate-heavy data can leave fewer): the lowest untaken points.
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t i = 0; int64_t(cand[size_t(b)].size()) < k && i < n; ++i) {
      if (taken[size_t(b)].insert(i).second) cand[size_t(b)].push_back(i);
    }
  }
  // Weights: the points nearest to each candidate. Vectors: the candidates' rows (unit length
  // for cosine).
  const int64_t m = assign_to(cand);
  Buffer<int32_t> counts = device_buffer<int32_t>(batch * m);
  count_labels(stream, labels.data(), batch, n, m, counts.data());
  std::vector<int64_t> flat(static_cast<size_t>(batch * m), 0);
  for (int64_t b = 0; b < batch; ++b) {
    for (size_t j = 0; j < cand[size_t(b)].size(); ++j) flat[size_t(b * m) + j] = cand[size_t(b)][j];
  }
  const Buffer<int64_t> rows_dev(flat, MemorySpace::device);
  Buffer<float> vectors = device_buffer<float>(batch * m * d);
  gather_kernel<V><<<warp_blocks(batch * m), kThreads, 0, stream>>>(
      x.data, int(batch), n, int(m), int(d), x.ld, x.batch_stride, rows_dev.data(),
      metric == KmeansMetric::cosine ? norms.data() : nullptr, vectors.data());
  TSR_CUDA_CHECK_LAUNCH("kmeans|| candidate rows");
  // The copies below run outside ctx's stream (a non-blocking one): wait for its kernels first.
  TSR_CUDA_CHECK(cudaStreamSynchronize(stream));
  const std::vector<int32_t> weights = counts.to_vector();
  const std::vector<float> host_vectors = vectors.to_vector();
  for (int64_t b = 0; b < batch; ++b) {
    Candidates& c = out[size_t(b)];
    c.rows = cand[size_t(b)];
    const int64_t count = int64_t(c.rows.size());
    c.vectors.assign(host_vectors.begin() + b * m * d, host_vectors.begin() + (b * m + count) * d);
    c.weights.assign(weights.begin() + b * m, weights.begin() + b * m + count);
  }
  return out;
}

// A RAII cudaEvent_t / cudaStream_t pair for the streaming driver.
struct StreamAndEvents {
  cudaStream_t copy = nullptr;
  cudaEvent_t copied[2] = {nullptr, nullptr}, consumed[2] = {nullptr, nullptr};
  StreamAndEvents() {
    TSR_CUDA_CHECK(cudaStreamCreateWithFlags(&copy, cudaStreamNonBlocking));
    for (int i = 0; i < 2; ++i) {
      TSR_CUDA_CHECK(cudaEventCreateWithFlags(&copied[i], cudaEventDisableTiming));
      TSR_CUDA_CHECK(cudaEventCreateWithFlags(&consumed[i], cudaEventDisableTiming));
    }
  }
  ~StreamAndEvents() {
    for (int i = 0; i < 2; ++i) {
      if (copied[i]) cudaEventDestroy(copied[i]);
      if (consumed[i]) cudaEventDestroy(consumed[i]);
    }
    if (copy) cudaStreamDestroy(copy);
  }
  StreamAndEvents(const StreamAndEvents&) = delete;
  StreamAndEvents& operator=(const StreamAndEvents&) = delete;
};

template <class V>
void fit_streamed(Context& ctx, BatchedDenseView<const V> x, int64_t k, const KmeansOptions& o,
                  BatchedDenseView<const float> initial, KmeansResult& r) {
  const auto stream = static_cast<cudaStream_t>(ctx.stream());
  const int64_t batch = x.batch, n = x.rows, d = x.cols;
  TSR_CHECK(o.empty_clusters == EmptyClusters::keep_centroid,
            "kmeans: gpu_streaming keeps empty clusters' centroids only (reseed_farthest needs "
            "every point's distance at once)");
  TSR_CHECK(k <= int64_t(INT32_MAX) / 2, "kmeans: k = ", k, " exceeds the GPU path's cluster keys");
  // Points per chunk: as asked, else a sixteenth of the problem (so that copies overlap the
  // kernels: one chunk is a copy, then the kernels, with nothing to overlap), at least
  // kMinStreamChunk points, and at most a quarter of the free device memory's worth.
  int64_t chunk = o.stream_chunk_points;
  if (chunk <= 0) {
    size_t free_bytes = 0, total_bytes = 0;
    TSR_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    const int64_t per_point = 2 * d * int64_t(sizeof(V)) + 8 * 4 + 4 * d / kChunk + 64;
    constexpr int64_t kMinStreamChunk = 65536;
    chunk = std::max((n + 15) / 16, kMinStreamChunk);
    chunk = std::max<int64_t>(kBM, std::min(chunk, int64_t(free_bytes / 4) / per_point));
  }
  chunk = std::min(chunk, n);
  TSR_CHECK(chunk <= int64_t(INT32_MAX), "kmeans: ", chunk, " points per chunk exceed int32");
  // The problems run one after another. Every point's label of the current one stays on the
  // device when that takes at most a sixteenth of the free memory (4 bytes a point against X's
  // 2-4 bytes x D): no label copies per chunk, and the host never waits on one. Otherwise each
  // chunk's labels travel with it (as always with TESSERA_KMEANS_STREAM_LABELS=host, which tests
  // use to run that path).
  size_t free_now = 0, total_now = 0;
  TSR_CUDA_CHECK(cudaMemGetInfo(&free_now, &total_now));
  const char* labels_env = std::getenv("TESSERA_KMEANS_STREAM_LABELS");
  const bool labels_resident = sizeof(int32_t) * size_t(n) <= free_now / 16 &&
                               !(labels_env && std::string(labels_env) == "host");
  const int64_t max_chunks = (chunk + kChunk - 1) / kChunk + k;

  // The result lives on the host, like X; centroids, tables and sums per problem on the device.
  KmeansResult out;
  out.batch = batch;
  out.k = k;
  out.dim = d;
  out.points = n;
  out.labels = Buffer<int32_t>(size_t(batch * n));
  out.centroids = Buffer<float>(size_t(batch * k * d));
  out.counts = Buffer<int64_t>(size_t(batch * k));
  out.inertia.assign(size_t(batch), 0.0);
  out.inertia_history.assign(size_t(batch), {});
  Buffer<float> centroids = device_buffer<float>(batch * k * d);
  copy_centroids(initial, centroids.data(), stream);
  // Pinned pages let the copies of X overlap the kernels; without them they still work, staged.
  const int64_t span = (batch - 1) * x.batch_stride + (n - 1) * x.ld + d;
  const bool pinned = cudaHostRegister(const_cast<V*>(x.data), sizeof(V) * size_t(span),
                                       cudaHostRegisterDefault) == cudaSuccess;
  if (!pinned) cudaGetLastError();
  struct Unpin {
    const void* p;
    bool on;
    ~Unpin() {
      if (on) cudaHostUnregister(const_cast<void*>(p));
    }
  } unpin{x.data, pinned};
  StreamAndEvents se;

  const BatchedDenseView<const V> shape{1, chunk, d, d, chunk * d, nullptr, MemorySpace::device};
  DeviceProblem<V> p(shape, k, o.metric, "kmeans", o.exact_f32);
  Buffer<V> xbuf[2] = {device_buffer<V>(chunk * d), device_buffer<V>(chunk * d)};
  Buffer<typename Tile<V>::Elem> table = device_buffer<typename Tile<V>::Elem>(p.table_elems());
  Buffer<float> c_half = device_buffer<float>(p.k_pad), norms = device_buffer<float>(chunk);
  Buffer<int32_t> labels = device_buffer<int32_t>(labels_resident ? n : chunk);  // one problem's
  Buffer<int32_t> keys = device_buffer<int32_t>(chunk);
  Buffer<int32_t> sorted_keys = device_buffer<int32_t>(chunk), points = device_buffer<int32_t>(chunk);
  Buffer<int32_t> order = device_buffer<int32_t>(chunk), offsets = device_buffer<int32_t>(k + 1);
  Buffer<int32_t> chunk_counts = device_buffer<int32_t>(k + 1);
  Buffer<int32_t> chunk_offsets = device_buffer<int32_t>(k + 1);
  Buffer<float> partial = device_buffer<float>(max_chunks * d);
  const int64_t tiles_max = (chunk + kBM - 1) / kBM * 2;  // 128- or 256-point tiles
  Buffer<double> tile_inertia = device_buffer<double>(tiles_max), sums = device_buffer<double>(k * d);
  Buffer<int> tile_changed = device_buffer<int>(tiles_max);
  Buffer<int64_t> counts = device_buffer<int64_t>(k), changed = device_buffer<int64_t>(1);
  Buffer<double> inertia = device_buffer<double>(1);
  Buffer<unsigned long long> flags = device_buffer<unsigned long long>(6);
  int key_bits = 1;
  while ((int64_t(1) << key_bits) < k) ++key_bits;
  size_t sort_bytes = 0;
  TSR_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, keys.data(), sorted_keys.data(),
                                                 points.data(), order.data(), int(chunk), 0,
                                                 key_bits, stream));
  const size_t temp_bytes = std::max(sort_bytes, segment_temp_bytes(int(k), stream));
  Buffer<unsigned char> temp = device_buffer<unsigned char>(int64_t(temp_bytes));
  iota_kernel<<<blocks_for(chunk), kThreads, 0, stream>>>(points.data(), chunk);
  TSR_CUDA_CHECK_LAUNCH("kmeans iota");
  p.table = table.data();
  p.c_half = c_half.data();
  p.x_norms = norms.data();
  p.flags = flags.data();

  for (int64_t b = 0; b < batch; ++b) {
    float* cb = centroids.data() + b * k * d;
    // The given centroids: finite, unit length for cosine (checked once).
    TSR_CUDA_CHECK(cudaMemsetAsync(flags.data(), 0xff, 6 * sizeof(unsigned long long), stream));
    check_centroids_kernel<<<warp_blocks(k), kThreads, 0, stream>>>(
        cb, k, int(d), p.metric == kCosine, flags.data() + 2, flags.data() + 3, flags.data() + 5);
    TSR_CUDA_CHECK_LAUNCH("kmeans check centroids");
    unsigned long long f[6];
    TSR_CUDA_CHECK(cudaMemcpyAsync(f, flags.data(), sizeof(f), cudaMemcpyDeviceToHost, stream));
    TSR_CUDA_CHECK(cudaStreamSynchronize(stream));
    TSR_CHECK(f[2] == ~0ull, "kmeans: initial_centroids: centroid [", b, "][",
              int64_t(f[2] / uint64_t(d)), "][", int64_t(f[2] % uint64_t(d)),
              "] is NaN or Inf; centroids must be finite");
    TSR_CHECK(f[5] == ~0ull, "kmeans: initial_centroids: centroid [", b, "][", int64_t(f[5]),
              "] has a squared norm over ", kMaxSquaredNorm);
    TSR_CHECK(f[3] == ~0ull, "kmeans: initial_centroids: centroid [", b, "][", int64_t(f[3]),
              "] is the zero vector, which has no direction under the cosine metric");
    int32_t* labels_b = out.labels.data() + b * n;
    std::fill(labels_b, labels_b + n, -1);
    if (labels_resident) {
      TSR_CUDA_CHECK(cudaMemsetAsync(labels.data(), 0xff, sizeof(int32_t) * size_t(n), stream));
    }
    double before = 0;
    int updates = 0;
    for (int pass = 0;; ++pass) {  // pass t: assignment t, with its sums for update t + 1
      p.build_table(stream, cb, nullptr);
      TSR_CUDA_CHECK(cudaMemsetAsync(sums.data(), 0, sizeof(double) * size_t(k * d), stream));
      TSR_CUDA_CHECK(cudaMemsetAsync(counts.data(), 0, sizeof(int64_t) * size_t(k), stream));
      TSR_CUDA_CHECK(cudaMemsetAsync(inertia.data(), 0, sizeof(double), stream));
      TSR_CUDA_CHECK(cudaMemsetAsync(changed.data(), 0, sizeof(int64_t), stream));
      const int64_t n_chunks = (n + chunk - 1) / chunk;
      auto issue_copy = [&](int64_t c) {  // chunk c's rows into xbuf[c % 2], on the copy stream
        const int64_t i0 = c * chunk, m = std::min(chunk, n - i0);
        if (c >= 2) TSR_CUDA_CHECK(cudaStreamWaitEvent(se.copy, se.consumed[c % 2], 0));
        const V* from = x.data + b * x.batch_stride + i0 * x.ld;
        if (x.ld == d) {  // contiguous rows: one plain copy (2D copies are not always as fast)
          TSR_CUDA_CHECK(cudaMemcpyAsync(xbuf[c % 2].data(), from, sizeof(V) * size_t(m * d),
                                         cudaMemcpyHostToDevice, se.copy));
        } else {
          TSR_CUDA_CHECK(cudaMemcpy2DAsync(xbuf[c % 2].data(), sizeof(V) * size_t(d), from,
                                           sizeof(V) * size_t(x.ld), sizeof(V) * size_t(d),
                                           size_t(m), cudaMemcpyHostToDevice, se.copy));
        }
        TSR_CUDA_CHECK(cudaEventRecord(se.copied[c % 2], se.copy));
      };
      TSR_CUDA_CHECK(cudaStreamSynchronize(stream));  // the table and zeroed sums come first
      issue_copy(0);
      for (int64_t c = 0; c < n_chunks; ++c) {
        if (c + 1 < n_chunks) issue_copy(c + 1);
        const int64_t i0 = c * chunk, m = std::min(chunk, n - i0);
        TSR_CUDA_CHECK(cudaStreamWaitEvent(stream, se.copied[c % 2], 0));
        DeviceProblem<V> pc = p;  // the same tables over this chunk's rows
        pc.x = {1, m, d, d, m * d, xbuf[c % 2].data(), MemorySpace::device};
        pc.tiles = (m + pc.points_per_block - 1) / pc.points_per_block;
        if (pass == 0) {
          TSR_CUDA_CHECK(cudaMemsetAsync(flags.data(), 0xff, 6 * sizeof(unsigned long long), stream));
        }
        point_norms_kernel<V><<<blocks_for(m * kNormLanes), kThreads, 0, stream>>>(
            pc.x.data, 1, m, int(d), d, m * d, rows_16b_aligned(pc.x), pc.metric, norms.data(),
            flags.data(), flags.data() + 1, flags.data() + 4);
        TSR_CUDA_CHECK_LAUNCH("kmeans point norms");
        if (pass == 0) {  // the first pass checks every row, naming it in X
          unsigned long long g[6];
          TSR_CUDA_CHECK(cudaMemcpyAsync(g, flags.data(), sizeof(g), cudaMemcpyDeviceToHost, stream));
          TSR_CUDA_CHECK(cudaStreamSynchronize(stream));
          TSR_CHECK(g[0] == ~0ull, "kmeans: X[", b, "][", i0 + int64_t(g[0] / uint64_t(d)), "][",
                    int64_t(g[0] % uint64_t(d)), "] is NaN or Inf; points must be finite");
          TSR_CHECK(g[4] == ~0ull, "kmeans: X[", b, "][", i0 + int64_t(g[4]), "] has a squared norm over ",
                    kMaxSquaredNorm, ", beyond what f32 distances can hold; scale the points down");
          TSR_CHECK(g[1] == ~0ull, "kmeans: X[", b, "][", i0 + int64_t(g[1]),
                    "] is the zero vector, which has no direction under the cosine metric");
        }
        int32_t* chunk_labels = labels_resident ? labels.data() + i0 : labels.data();
        if (!labels_resident) {
          TSR_CUDA_CHECK(cudaMemcpyAsync(chunk_labels, labels_b + i0, sizeof(int32_t) * size_t(m),
                                         cudaMemcpyHostToDevice, stream));
        }
        AssignArgs a = pc.assign_args();
        a.labels = chunk_labels;
        a.sort_keys = keys.data();
        a.tile_inertia = tile_inertia.data();
        a.tile_changed = tile_changed.data();
        pc.launch_assign(stream, a);
        add_tiles_kernel<<<1, kWarp, 0, stream>>>(tile_inertia.data(), tile_changed.data(),
                                                  int(pc.tiles), inertia.data(), changed.data());
        TSR_CUDA_CHECK_LAUNCH("kmeans add tiles");
        if (!labels_resident) {  // pageable: the host waits for this chunk's assignment here
          TSR_CUDA_CHECK(cudaMemcpyAsync(labels_b + i0, chunk_labels, sizeof(int32_t) * size_t(m),
                                         cudaMemcpyDeviceToHost, stream));
        }
        size_t bytes = temp_bytes;
        TSR_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.data(), bytes, keys.data(),
                                                       sorted_keys.data(), points.data(),
                                                       order.data(), int(m), 0, key_bits, stream));
        segment(stream, sorted_keys.data(), order.data(), int(m), 0, m, int(k), offsets.data(),
                chunk_counts.data(), chunk_offsets.data(), temp.data(), temp_bytes);
        sum_chunks<V>(stream, d % 4 == 0, pc.x.data, int(m), int(d), int(k), int(k), d, m * d,
                      order.data(), offsets.data(), chunk_offsets.data(), 0,
                      pc.inv_norms_or_null(), nullptr, max_chunks, partial.data());
        accumulate_kernel<<<warp_blocks(k), kThreads, 0, stream>>>(
            partial.data(), offsets.data(), chunk_offsets.data(), int(k), int(d), sums.data(),
            counts.data());
        TSR_CUDA_CHECK_LAUNCH("kmeans accumulate");
        TSR_CUDA_CHECK(cudaEventRecord(se.consumed[c % 2], stream));
      }
      double total = 0;
      int64_t moved = 0;
      TSR_CUDA_CHECK(cudaMemcpyAsync(&total, inertia.data(), sizeof(double), cudaMemcpyDeviceToHost,
                                     stream));
      TSR_CUDA_CHECK(cudaMemcpyAsync(&moved, changed.data(), sizeof(int64_t), cudaMemcpyDeviceToHost,
                                     stream));
      TSR_CUDA_CHECK(cudaStreamSynchronize(stream));
      out.inertia_history[size_t(b)].push_back(total);
      out.inertia[size_t(b)] = total;
      const bool converged = pass > 0 && !o.fixed_iterations &&
                             (moved == 0 || before - total <= o.tolerance * std::abs(before));
      before = total;
      // Labels of this pass are final (they belong to the current centroids): done.
      const bool done = converged || updates == o.max_iterations;
      if (!done) {  // update: the centroids of this pass's sums
        finalize_sums_kernel<<<warp_blocks(k), kThreads, 0, stream>>>(
            sums.data(), counts.data(), int(k), int(d), p.metric == kCosine, cb);
        TSR_CUDA_CHECK_LAUNCH("kmeans finalize sums");
        ++updates;
      }
      // Without the final assignment the last update ends the fit: its labels stay.
      if (done || (!o.final_assignment && updates == o.max_iterations)) {
        TSR_CUDA_CHECK(cudaMemcpyAsync(out.counts.data() + b * k, counts.data(),
                                       sizeof(int64_t) * size_t(k), cudaMemcpyDeviceToHost,
                                       stream));
        if (labels_resident) {
          TSR_CUDA_CHECK(cudaMemcpyAsync(labels_b, labels.data(), sizeof(int32_t) * size_t(n),
                                         cudaMemcpyDeviceToHost, stream));
        }
        TSR_CUDA_CHECK(cudaStreamSynchronize(stream));
        break;
      }
    }
    out.iterations = std::max(out.iterations, updates);
  }
  TSR_CUDA_CHECK(cudaMemcpy(out.centroids.data(), centroids.data(),
                            sizeof(float) * size_t(batch * k * d), cudaMemcpyDeviceToHost));
  r = std::move(out);
}

#define TSR_INSTANTIATE_KMEANS_CUDA(V)                                                          \
  template void fit(Context&, BatchedDenseView<const V>, int64_t, const KmeansOptions&,         \
                    const InitialCentroids&, KmeansResult&);                                    \
  template void assign(Context&, BatchedDenseView<const V>, BatchedDenseView<const float>,      \
                       KmeansMetric, int32_t*, float*, bool);                                   \
  template int64_t max_dimension<V>();                                                          \
  template void check_max_dimension<V>(int64_t, const char*);                                    \
  template void fit_streamed(Context&, BatchedDenseView<const V>, int64_t, const KmeansOptions&, \
                             BatchedDenseView<const float>, KmeansResult&);                      \
  template std::vector<Candidates> parallel_candidates(Context&, BatchedDenseView<const V>,      \
                                                       int64_t, KmeansMetric,                    \
                                                       const std::vector<uint64_t>&, int, double);
TSR_INSTANTIATE_KMEANS_CUDA(float)
TSR_INSTANTIATE_KMEANS_CUDA(bf16)
TSR_INSTANTIATE_KMEANS_CUDA(f16)

}  // namespace tessera::ops::kmeans_cuda
