// CSR SDDMM on the GPU: sddmm_csr_row_split. One warp per row; for each entry the lanes split the
// feature dimension, multiply X[row] by Y[col] and reduce with shuffles in a fixed order, so the
// result is deterministic. Lane 0 writes out[e].
#include "core/cuda_check.h"
#include "core/error.h"
#include "ops/cuda_common.cuh"
#include "ops/cuda_kernels.h"

namespace tessera::ops::cuda {

namespace {

constexpr int kWarpsPerBlock = 8;

template <class V, class I>
__global__ void __launch_bounds__(kWarpsPerBlock* kWarp)
    sddmm_csr_row_split_kernel(CsrView<V, I> a, DenseView<const V> x, DenseView<const V> y,
                               bool scale_by_a, float* out) {
  const int lane = threadIdx.x % kWarp;
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (row >= a.rows) return;
  const V* xrow = x.data + row * x.ld;
  for (int64_t e = a.indptr[row]; e < a.indptr[row + 1]; ++e) {
    const V* yrow = y.data + int64_t(a.indices[e]) * y.ld;
    float partial = 0.0f;
    for (int64_t f = lane; f < x.cols; f += kWarp) partial += load_f32(xrow[f]) * load_f32(yrow[f]);
    const float d = warp_sum(partial);
    if (lane == 0) out[e] = scale_by_a ? d * load_f32(a.values[e]) : d;
  }
}

}  // namespace

template <class V, class I>
void sddmm_csr_row_split(Context& ctx, const CsrView<V, I>& a, DenseView<const V> x,
                         DenseView<const V> y, bool scale_by_a, float* out) {
  if (a.rows == 0 || a.nnz == 0) return;
  const unsigned blocks = grid_for(a.rows, kWarpsPerBlock);
  sddmm_csr_row_split_kernel<<<blocks, kWarpsPerBlock * kWarp, 0,
                               static_cast<cudaStream_t>(ctx.stream())>>>(a, x, y, scale_by_a, out);
  TSR_CUDA_CHECK_LAUNCH("sddmm_csr_row_split");
}

#define TSR_INSTANTIATE_SDDMM_CUDA(V, I)                                                   \
  template void sddmm_csr_row_split(Context&, const CsrView<V, I>&, DenseView<const V>,    \
                                    DenseView<const V>, bool, float*);
TSR_FOR_EACH_COMPUTE_TYPE(TSR_INSTANTIATE_SDDMM_CUDA)

}  // namespace tessera::ops::cuda
