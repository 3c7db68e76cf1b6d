// CSR SpMM on the GPU: spmm_csr_row_split. A group of tpr threads (a sub-warp) owns a row; each
// thread owns VEC consecutive features, so one pass covers tpr * VEC features and B rows are
// gathered with VEC-wide loads. The group loads tpr (col, val) pairs at a time and broadcasts
// them by shuffle; feature tiles of tpr * VEC go to blockIdx.y. No atomics: every output element is written by one thread, so results are
// deterministic. Shuffles run only in group-uniform control flow (every lane of the group takes
// the same branch), as __shfl_sync requires of the lanes in its mask.
#include <cstdint>
#include <type_traits>

#include "core/cuda_check.h"
#include "core/error.h"
#include "ops/cuda_common.cuh"
#include "ops/cuda_kernels.h"

namespace tessera::ops::cuda {

namespace {

// At most 512 threads a block, so the compiler may give each thread up to 128 registers (the
// gathers in flight need them).
constexpr int kRowSplitMaxThreads = 512;

// kDeepGathers (vec = 1 only), for launches too small to fill the GPU, where each row's chain of
// trips to memory, not occupancy, sets the time (see launch()): every gather of a full-tile batch
// (at most 32 entries) is issued before its first product, the batch cut into blocks of 16, 16,
// 8, 4, 2 and 1 entries by group-uniform branches (no guard per entry), so that a row of up to 32
// entries costs one trip where rounds of 8, 4 and 1 cost one each.
template <class V, class I, int VEC, bool kDeepGathers = false>
__global__ void __launch_bounds__(kRowSplitMaxThreads) spmm_csr_row_split_kernel(CsrView<V, I> a, DenseView<const V> b, DenseView<float> c,
                                          float alpha, float beta, int tpr) {
  const int lane = threadIdx.x % tpr;  // position in the row's group
  const int rows_per_block = blockDim.x / tpr;
  const int64_t row = int64_t(blockIdx.x) * rows_per_block + threadIdx.x / tpr;
  if (row >= a.rows) return;  // whole groups leave together: tpr divides the warp
  const unsigned group_mask = team_mask(tpr);  // groups are aligned inside the warp
  const int64_t begin = a.indptr[row], end = a.indptr[row + 1];
  float* crow = c.data + row * c.ld;
  const int64_t F = c.cols;
  const int64_t tile = int64_t(tpr) * VEC;
  // Feature tiles are spread over blockIdx.y (grid-stride when F needs more than the grid has).
  for (int64_t f0 = int64_t(blockIdx.y) * tile; f0 < F; f0 += int64_t(gridDim.y) * tile) {
    const int64_t f = f0 + int64_t(lane) * VEC;
    const int width = f >= F ? 0 : (F - f >= VEC ? VEC : int(F - f));  // features this thread owns
    const bool full_tile = f0 + tile <= F;                             // same for the whole group
    // B's row j at feature f, addressed in bytes (dense_row).
    const char* b_at = reinterpret_cast<const char*>(b.data + f);
    const uint64_t b_ld_bytes = uint64_t(b.ld) * sizeof(V);
    const auto b_row = [&](I j) { return dense_row<V>(b_at, j, b_ld_bytes); };
    float acc[VEC] = {};
    // (col, val) of the next tpr entries are loaded one chunk ahead, off the critical path.
    I next_col = 0;
    float next_val = 0.0f;
    if (begin + lane < end) {
      next_col = a.indices[begin + lane];
      next_val = load_f32(a.values[begin + lane]);
    }
    for (int64_t e0 = begin; e0 < end; e0 += tpr) {
      const I col = next_col;
      const float val = next_val;
      if (e0 + tpr + lane < end) {
        next_col = a.indices[e0 + tpr + lane];
        next_val = load_f32(a.values[e0 + tpr + lane]);
      }
      const int batch = end - e0 < tpr ? int(end - e0) : tpr;
      int k = 0;
      // U entries at a time: U independent gathers in flight before the first use (U = 8, then 4,
      // then one by one for the rest of the batch).
      const auto gather_batches = [&](auto in_flight) {
        constexpr int U = decltype(in_flight)::value;
        for (; k + U <= batch; k += U) {
          float x[U][VEC], v[U];
#pragma unroll
          for (int u = 0; u < U; ++u) {
            const I j = __shfl_sync(group_mask, col, k + u, tpr);
            v[u] = __shfl_sync(group_mask, val, k + u, tpr);
            load_vec<VEC>(b_row(j), x[u]);
          }
#pragma unroll
          for (int u = 0; u < U; ++u) {
#pragma unroll
            for (int i = 0; i < VEC; ++i) acc[i] += v[u] * x[u][i];
          }
        }
      };
      if constexpr (kDeepGathers) {
        static_assert(VEC == 1, "the deep-gather form is for 1-wide gathers");
        if (full_tile) {
          float x16a[16], x16b[16], x8[8], x4[4], x2[2], x1[1];
          const bool has16a = batch >= 16, has16b = batch >= 32;
          const int rest = batch & 15;  // entries after the blocks of 16
          const auto gather = [&](auto& x, int from) {
            constexpr int N = sizeof(x) / sizeof(x[0]);
#pragma unroll
            for (int u = 0; u < N; ++u) x[u] = load_f32(*b_row(__shfl_sync(group_mask, col, from + u, tpr)));
          };
          const auto multiply = [&](const auto& x, int from) {
            constexpr int N = sizeof(x) / sizeof(x[0]);
#pragma unroll
            for (int u = 0; u < N; ++u) acc[0] += __shfl_sync(group_mask, val, from + u, tpr) * x[u];
          };
          // Block b starts after the blocks before it; both passes walk them in the same order.
          const int at8 = (has16a ? 16 : 0) + (has16b ? 16 : 0), at4 = at8 + (rest & 8),
                    at2 = at4 + (rest & 4), at1 = at2 + (rest & 2);
          if (has16a) gather(x16a, 0);
          if (has16b) gather(x16b, 16);
          if (rest & 8) gather(x8, at8);
          if (rest & 4) gather(x4, at4);
          if (rest & 2) gather(x2, at2);
          if (rest & 1) gather(x1, at1);
          if (has16a) multiply(x16a, 0);
          if (has16b) multiply(x16b, 16);
          if (rest & 8) multiply(x8, at8);
          if (rest & 4) multiply(x4, at4);
          if (rest & 2) multiply(x2, at2);
          if (rest & 1) multiply(x1, at1);
          k = batch;
        }
      } else if (full_tile) {
        gather_batches(std::integral_constant<int, kGathersInFlight>{});
        gather_batches(std::integral_constant<int, 4>{});  // short batches (tpr = 4)
      }
      for (; k < batch; ++k) {
        const I j = __shfl_sync(group_mask, col, k, tpr);
        const float v = __shfl_sync(group_mask, val, k, tpr);
        const V* brow = b_row(j);
        float x[VEC];
        if (width == VEC) {
          load_vec<VEC>(brow, x);
        } else {
          load_partial<VEC>(brow, width, x);
        }
#pragma unroll
        for (int i = 0; i < VEC; ++i) acc[i] += v * x[i];
      }
    }
    if (width == VEC) {
      float out[VEC];
      if (beta != 0.0f) load_vec<VEC>(crow + f, out);
#pragma unroll
      for (int i = 0; i < VEC; ++i) out[i] = beta == 0.0f ? alpha * acc[i] : alpha * acc[i] + beta * out[i];
      store_vec<VEC>(crow + f, out);
    } else {
      for (int i = 0; i < width; ++i) {
        crow[f + i] = beta == 0.0f ? alpha * acc[i] : alpha * acc[i] + beta * crow[f + i];
      }
    }
  }
}

template <int VEC, class V, class I>
void launch(Context& ctx, const CsrView<V, I>& a, DenseView<const V> b, DenseView<float> c,
            float alpha, float beta, int tpr, int rpb) {
  const int64_t tiles = (c.cols + int64_t(tpr) * VEC - 1) / (int64_t(tpr) * VEC);
  const dim3 grid(grid_for(a.rows, rpb), unsigned(tiles < 65535 ? tiles : 65535));
  const auto stream = static_cast<cudaStream_t>(ctx.stream());
  // 1-wide gathers on a launch whose threads fill under a third of the GPU: the deep-gather form
  // (on the H200, fidapex6 F = 32, 1651 rows of 30: 7.4 us with rounds of 16, 8, 4 and 1, 6.8
  // with every gather of a row in flight at once; Cora F = 32 10.2 -> 10.0 us). With more threads
  // its registers (102 where the other form takes 64) cost more than the shorter chains save:
  // with rounds of 16 and 94 registers, bcsstk33 F = 32 24.0 -> 25.1 us, fidapex6 F = 64 at
  // vec = 1 8.6 -> 9.6 us.
  if constexpr (VEC == 1) {
    int device = 0, sms = 0, per_sm = 0;
    TSR_CUDA_CHECK(cudaGetDevice(&device));
    TSR_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    TSR_CUDA_CHECK(cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxThreadsPerMultiProcessor, device));
    const double threads = double(a.rows) * double(tpr) * double(tiles);
    if (threads * 3 < double(sms) * double(per_sm)) {
      spmm_csr_row_split_kernel<V, I, 1, true>
          <<<grid, tpr * rpb, 0, stream>>>(a, b, c, alpha, beta, tpr);
      TSR_CUDA_CHECK_LAUNCH("spmm_csr_row_split");
      return;
    }
  }
  spmm_csr_row_split_kernel<V, I, VEC><<<grid, tpr * rpb, 0, stream>>>(a, b, c, alpha, beta, tpr);
  TSR_CUDA_CHECK_LAUNCH("spmm_csr_row_split");
}

}  // namespace

template <class V, class I>
void spmm_csr_row_split(Context& ctx, const CsrView<V, I>& a, DenseView<const V> b,
                        DenseView<float> c, float alpha, float beta, int tpr, int rpb, int vec) {
  TSR_CHECK(tpr >= 1 && tpr <= kWarp && (tpr & (tpr - 1)) == 0, "spmm_csr_row_split: tpr = ", tpr,
            " must be a power of two in [1, 32]");
  TSR_CHECK(tpr * rpb >= kWarp && tpr * rpb <= kRowSplitMaxThreads, "spmm_csr_row_split: tpr * rpb = ", tpr * rpb,
            " threads per block; needs 32..", kRowSplitMaxThreads);
  if (vec > 1) {
    const auto aligned = [&](const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; };
    TSR_CHECK(b.ld % vec == 0 && c.ld % vec == 0 && aligned(b.data, vec * sizeof(V)) &&
                  aligned(c.data, vec * sizeof(float)),
              "spmm_csr_row_split: vec=", vec, " needs B and C rows aligned to ", vec,
              " elements (leading dimensions ", b.ld, ", ", c.ld, ")");
  }
  if (a.rows == 0 || c.cols == 0) return;
  switch (vec) {
    case 1: return launch<1>(ctx, a, b, c, alpha, beta, tpr, rpb);
    case 2: return launch<2>(ctx, a, b, c, alpha, beta, tpr, rpb);
    case 4: return launch<4>(ctx, a, b, c, alpha, beta, tpr, rpb);
    default: TSR_FAIL("spmm_csr_row_split: vec = ", vec, " must be 1, 2 or 4");
  }
}

#define TSR_INSTANTIATE_SPMM_CUDA(V, I)                                                   \
  template void spmm_csr_row_split(Context&, const CsrView<V, I>&, DenseView<const V>,    \
                                   DenseView<float>, float, float, int, int, int);
TSR_FOR_EACH_COMPUTE_TYPE(TSR_INSTANTIATE_SPMM_CUDA)

}  // namespace tessera::ops::cuda
