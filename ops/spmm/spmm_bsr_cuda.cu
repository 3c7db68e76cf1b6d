// BSR SpMM on tensor cores: spmm_bsr_tensor_core (schedule bsr.tensor_core).
//
// wpr warps (1, 2 or 4) own one block row of A (r <= 32 rows: MT = 1 or 2 m16 tiles) and a tile
// of FT = 8 * NT features (NT m16n8 accumulator tiles, f32); a thread block holds 4 / wpr block
// rows. Warp s of a block row takes its blocks s, s + wpr, ... and, for each k-step of a block
// (16 for bf16 / f16, 8 for f32 as tf32), loads its MMA fragments straight from global memory:
// A's from the block (contiguous, r x c row-major), B's from the c rows of B the block meets
// (each fragment load reads 8 consecutive features of 4 rows: whole 32-byte sectors for f32,
// half sectors for 16-bit types, whose other half the next fragment load reads). Entries
// past the block's shape, B's rows or F load as zero. No shared memory in the main loop: every
// warp streams independently and the SM's resident warps hide the gather latency. The split
// warps' sums meet through shared memory in split order, and each output element is written
// once: no atomics, the same bits every run.
#include <cstdint>
#include <type_traits>

#include "core/cuda_check.h"
#include "core/error.h"
#include "ops/cuda_common.cuh"
#include "ops/cuda_kernels.h"
#include "ops/mma.cuh"

namespace tessera::ops::cuda {

namespace {

using namespace mma_sync;

constexpr int kBsrWarps = 4;  // warps (block rows) per thread block
constexpr int kMaxBlockRows = 32;
constexpr int kMaxBlockCols = 64;

// k per MMA: 16 for the 16-bit types, 8 for tf32.
template <class V>
constexpr int kMmaK = std::is_same_v<V, float> ? 8 : 16;

// Two 16-bit values packed as one fragment register (lo in the low half).
__device__ __forceinline__ uint32_t pack(uint16_t lo, uint16_t hi) {
  return uint32_t(lo) | (uint32_t(hi) << 16);
}

template <class V>
__device__ __forceinline__ uint16_t bits_or_zero(const V* p, bool ok) {
  return ok ? p->bits : uint16_t(0);
}

template <class V, class I, int MT, int NT>
__global__ void __launch_bounds__(kBsrWarps * kWarp)
    spmm_bsr_tc_kernel(BsrView<V, I> a, DenseView<const V> b, DenseView<float> c, float alpha,
                       float beta, int wpr) {
  constexpr int kK = kMmaK<V>;
  // Partial accumulators of the split warps (wpr > 1 only: the launch sizes it, so wpr = 1 keeps
  // its occupancy), [warp][element][lane] (lane fastest: no bank conflicts).
  extern __shared__ float partial_sums[];
  constexpr int kElems = MT * NT * 4;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const auto partial = [&](int w, int e) -> float& {
    return partial_sums[(w * kElems + e) * kWarp + lane];
  };
  const int g = lane / 4, t = lane % 4;  // fragment row group and thread-in-group
  const int split = warp % wpr;          // this warp takes blocks split, split + wpr, ...
  const int64_t brow = int64_t(blockIdx.x) * (kBsrWarps / wpr) + warp / wpr;
  const bool live = brow * a.block_rows < a.rows;  // not past the last block row
  const int r = int(a.block_rows), bc = int(a.block_cols);
  const int64_t F = c.cols;
  const int64_t f0 = int64_t(blockIdx.y) * (8 * NT);
  // This thread's B column in each n-tile (the fragment's n = g), and whether it is inside F.
  int64_t n[NT];
  bool n_ok[NT];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) n[nt] = f0 + nt * 8 + g, n_ok[nt] = n[nt] < F;
  float acc[MT][NT][4] = {};
  const int64_t first = live ? int64_t(a.indptr[brow]) + split : 0;
  const int64_t last = live ? int64_t(a.indptr[brow + 1]) : 0;
  // The next block's column is loaded one block ahead, off the gather's critical path.
  int64_t next_col = first < last ? int64_t(a.indices[first]) : 0;
  for (int64_t kb = first; kb < last; kb += wpr) {
    const V* blk = a.values + kb * r * bc;
    const int64_t col0 = next_col * bc;  // B row of the block's column 0
    if (kb + wpr < last) next_col = a.indices[kb + wpr];
    for (int k0 = 0; k0 < bc; k0 += kK) {
      uint32_t af[MT][4];
      uint32_t bf[NT][2];
      if constexpr (std::is_same_v<V, float>) {
        // tf32 m16n8k8: a0 (g, t), a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4);
        // b0 (k = t, n = g), b1 (k = t + 4, n = g).
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
          for (int q = 0; q < 4; ++q) {
            const int i = mt * 16 + g + 8 * (q % 2), k = k0 + t + 4 * (q / 2);
            af[mt][q] = __float_as_uint(i < r && k < bc ? round_tf32(blk[i * bc + k]) : 0.0f);
          }
        }
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
          for (int q = 0; q < 2; ++q) {
            const int k = k0 + t + 4 * q;
            const int64_t row = col0 + k;
            const bool ok = n_ok[nt] && k < bc && row < b.rows;
            bf[nt][q] = __float_as_uint(ok ? round_tf32(b.data[row * b.ld + n[nt]]) : 0.0f);
          }
        }
      } else {
        // m16n8k16: a0 (g, 2t..2t+1), a1 (g + 8, 2t..), a2 (g, 2t+8..), a3 (g + 8, 2t+8..);
        // b0 (k = 2t..2t+1, n = g), b1 (k = 2t+8..2t+9, n = g).
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
          for (int q = 0; q < 4; ++q) {
            const int i = mt * 16 + g + 8 * (q % 2), k = k0 + 2 * t + 8 * (q / 2);
            const V* p = blk + i * bc + k;
            af[mt][q] = pack(bits_or_zero(p, i < r && k < bc), bits_or_zero(p + 1, i < r && k + 1 < bc));
          }
        }
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
          for (int q = 0; q < 2; ++q) {
            const int k = k0 + 2 * t + 8 * q;
            const int64_t row = col0 + k;
            const V* p = b.data + row * b.ld + n[nt];
            bf[nt][q] = pack(bits_or_zero(p, n_ok[nt] && k < bc && row < b.rows),
                             bits_or_zero(p + b.ld, n_ok[nt] && k + 1 < bc && row + 1 < b.rows));
          }
        }
      }
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) mma<V>(acc[mt][nt], af[mt], bf[nt][0], bf[nt][1]);
      }
    }
  }
  if (wpr > 1) {  // the split warps' sums meet in the first warp, in split order (deterministic)
    if (split > 0) {
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
          for (int q = 0; q < 4; ++q) partial(warp, (mt * NT + nt) * 4 + q) = acc[mt][nt][q];
    }
    __syncthreads();
    if (split > 0) return;
    for (int w = warp + 1; w < warp + wpr; ++w) {
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
          for (int q = 0; q < 4; ++q) acc[mt][nt][q] += partial(w, (mt * NT + nt) * 4 + q);
    }
  }
  if (!live) return;
  // Accumulator element q of (mt, nt): row mt*16 + g + 8*(q/2), feature nt*8 + 2t + q%2.
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int i = mt * 16 + g + 8 * (q / 2);
      const int64_t row = brow * r + i;
      if (i >= r || row >= c.rows) continue;
      float* crow = c.data + row * c.ld;
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const int64_t f = f0 + nt * 8 + 2 * t + q % 2;
        if (f < F) crow[f] = beta == 0.0f ? alpha * acc[mt][nt][q] : alpha * acc[mt][nt][q] + beta * crow[f];
      }
    }
  }
}

template <class V, class I, int MT, int NT>
void launch(Context& ctx, const BsrView<V, I>& a, DenseView<const V> b, DenseView<float> c,
            float alpha, float beta, int wpr) {
  const int64_t tiles = (c.cols + 8 * NT - 1) / (8 * NT);
  TSR_CHECK(tiles <= 65535, "spmm_bsr_tensor_core: F = ", c.cols, " needs more than 65535 tiles of ",
            8 * NT, " features");
  const dim3 grid(grid_for(a.block_row_count(), kBsrWarps / wpr), unsigned(tiles));
  const size_t smem = wpr > 1 ? size_t(kBsrWarps) * MT * NT * 4 * kWarp * sizeof(float) : 0;
  spmm_bsr_tc_kernel<V, I, MT, NT><<<grid, kBsrWarps * kWarp, smem, static_cast<cudaStream_t>(ctx.stream())>>>(
      a, b, c, alpha, beta, wpr);
  TSR_CUDA_CHECK_LAUNCH("spmm_bsr_tc_kernel");
}

}  // namespace

template <class V, class I>
void spmm_bsr_tensor_core(Context& ctx, const BsrView<V, I>& a, DenseView<const V> b,
                          DenseView<float> c, float alpha, float beta, int features_per_warp,
                          int warps_per_block_row) {
  TSR_CHECK(a.block_rows >= 1 && a.block_rows <= kMaxBlockRows && a.block_cols >= 1 &&
                a.block_cols <= kMaxBlockCols,
            "spmm_bsr_tensor_core: blocks of ", a.block_rows, "x", a.block_cols,
            "; the kernel takes up to ", kMaxBlockRows, "x", kMaxBlockCols);
  TSR_CHECK(features_per_warp == 32 || features_per_warp == 64,
            "spmm_bsr_tensor_core: ft = ", features_per_warp, " must be 32 or 64");
  const int wpr = warps_per_block_row;
  TSR_CHECK(wpr == 1 || wpr == 2 || wpr == 4, "spmm_bsr_tensor_core: wpr = ", wpr,
            " must be 1, 2 or 4");
  if (a.rows == 0 || c.cols == 0) return;
  const bool two_m_tiles = a.block_rows > 16;
  if (features_per_warp == 32) {
    return two_m_tiles ? launch<V, I, 2, 4>(ctx, a, b, c, alpha, beta, wpr)
                       : launch<V, I, 1, 4>(ctx, a, b, c, alpha, beta, wpr);
  }
  return two_m_tiles ? launch<V, I, 2, 8>(ctx, a, b, c, alpha, beta, wpr)
                     : launch<V, I, 1, 8>(ctx, a, b, c, alpha, beta, wpr);
}

#define TSR_INSTANTIATE_SPMM_BSR_CUDA(V, I)                                                     \
  template void spmm_bsr_tensor_core(Context&, const BsrView<V, I>&, DenseView<const V>,        \
                                     DenseView<float>, float, float, int, int);
TSR_FOR_EACH_COMPUTE_TYPE(TSR_INSTANTIATE_SPMM_BSR_CUDA)

}  // namespace tessera::ops::cuda
