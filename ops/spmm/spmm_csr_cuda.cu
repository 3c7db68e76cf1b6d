// CSR SpMM on the GPU: spmm_csr_row_split. One warp per row; the warp walks the feature dimension
// in chunks of 32 (one feature per lane, so B-row loads are coalesced) and the row's entries in
// batches of 32 (each lane loads one (col, val) pair, then the warp broadcasts them by shuffle).
// No atomics: every output element is written by exactly one lane, so results are deterministic.
#include "core/cuda_check.h"
#include "core/error.h"
#include "ops/cuda_common.cuh"
#include "ops/cuda_kernels.h"

namespace tessera::ops::cuda {

namespace {

constexpr int kWarpsPerBlock = 8;

template <class V, class I>
__global__ void __launch_bounds__(kWarpsPerBlock* kWarp)
    spmm_csr_row_split_kernel(CsrView<V, I> a, DenseView<const V> b, DenseView<float> c,
                              float alpha, float beta) {
  const int lane = threadIdx.x % kWarp;
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (row >= a.rows) return;
  const int64_t begin = a.indptr[row], end = a.indptr[row + 1];
  float* crow = c.data + row * c.ld;
  for (int64_t f0 = 0; f0 < c.cols; f0 += kWarp) {
    const int64_t f = f0 + lane;
    const bool active = f < c.cols;
    float acc = 0.0f;
    for (int64_t e0 = begin; e0 < end; e0 += kWarp) {
      const int64_t mine = e0 + lane;
      int64_t col = 0;
      float val = 0.0f;
      if (mine < end) {
        col = int64_t(a.indices[mine]);
        val = load_f32(a.values[mine]);
      }
      const int batch = end - e0 < kWarp ? int(end - e0) : kWarp;
      for (int k = 0; k < batch; ++k) {
        const int64_t j = __shfl_sync(0xffffffffu, col, k);
        const float v = __shfl_sync(0xffffffffu, val, k);
        if (active) acc += v * load_f32(b.data[j * b.ld + f]);
      }
    }
    if (active) crow[f] = beta == 0.0f ? alpha * acc : alpha * acc + beta * crow[f];
  }
}

}  // namespace

template <class V, class I>
void spmm_csr_row_split(Context& ctx, const CsrView<V, I>& a, DenseView<const V> b,
                        DenseView<float> c, float alpha, float beta) {
  if (a.rows == 0 || c.cols == 0) return;
  const unsigned blocks = grid_for(a.rows, kWarpsPerBlock);
  spmm_csr_row_split_kernel<<<blocks, kWarpsPerBlock * kWarp, 0,
                              static_cast<cudaStream_t>(ctx.stream())>>>(a, b, c, alpha, beta);
  TSR_CUDA_CHECK_LAUNCH("spmm_csr_row_split");
}

#define TSR_INSTANTIATE_SPMM_CUDA(V, I)                                                   \
  template void spmm_csr_row_split(Context&, const CsrView<V, I>&, DenseView<const V>,    \
                                   DenseView<float>, float, float);
TSR_FOR_EACH_COMPUTE_TYPE(TSR_INSTANTIATE_SPMM_CUDA)

}  // namespace tessera::ops::cuda
