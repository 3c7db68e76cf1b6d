// CSR SDDMM on the GPU. Both variants reduce each dot product with shuffles in a fixed order and
// write every output once: deterministic bits, no atomics.
// - sddmm_csr_row_split: one warp per row; for each entry the lanes split the feature dimension,
//   multiply X[row] by Y[col] and reduce; lane 0 writes out[e].
// - sddmm_csr_edge_group: the nonzeros split evenly (ept per team of tpe lanes), so a hub row is
//   shared by many teams; each lane owns VEC features per tile, four edges are in flight at a
//   time, and the team's partial dot products meet in a shuffle reduction.
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

constexpr int kEdgeGroupThreads = 256;
constexpr int kEdgesInFlight = 4;

template <class V, class I, int VEC>
__global__ void __launch_bounds__(kEdgeGroupThreads)
    sddmm_csr_edge_group_kernel(CsrView<V, I> a, DenseView<const V> x, DenseView<const V> y,
                                bool scale_by_a, float* out, int tpe, int64_t ept) {
  const int lane = threadIdx.x % tpe;
  const int64_t team = int64_t(blockIdx.x) * (kEdgeGroupThreads / tpe) + threadIdx.x / tpe;
  const int64_t first = team * ept;
  if (first >= a.nnz) return;  // whole teams leave together
  const int64_t last = first + ept < a.nnz ? first + ept : a.nnz;
  const unsigned mask = team_mask(tpe);
  // The row holding edge `first`: the smallest r with indptr[r + 1] > first.
  int64_t lo = 0, hi = a.rows - 1;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (int64_t(a.indptr[mid + 1]) > first) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  int64_t row = lo;
  RowEnds<I> ends(a.indptr, a.rows, row, tpe, mask);
  int64_t row_end = ends.end_of(row);
  const int64_t F = x.cols;
  for (int64_t e0 = first; e0 < last; e0 += kEdgesInFlight) {
    const int n = last - e0 < kEdgesInFlight ? int(last - e0) : kEdgesInFlight;
    const V* xrow[kEdgesInFlight];
    const V* yrow[kEdgesInFlight];
#pragma unroll
    for (int u = 0; u < kEdgesInFlight; ++u) {
      if (u < n) {
        while (e0 + u >= row_end) row_end = ends.end_of(++row);
        xrow[u] = x.data + row * x.ld;
        yrow[u] = y.data + int64_t(a.indices[e0 + u]) * y.ld;
      } else {  // past the team's last edge: repeat the last one, never written
        xrow[u] = xrow[0];
        yrow[u] = yrow[0];
      }
    }
    float dot[kEdgesInFlight] = {};
    for (int64_t f = int64_t(lane) * VEC; f < F; f += int64_t(tpe) * VEC) {
      const int width = F - f >= VEC ? VEC : int(F - f);
      float xv[kEdgesInFlight][VEC], yv[kEdgesInFlight][VEC];
#pragma unroll
      for (int u = 0; u < kEdgesInFlight; ++u) {
        if (width == VEC) {
          load_vec<VEC>(xrow[u] + f, xv[u]);
          load_vec<VEC>(yrow[u] + f, yv[u]);
        } else {
          load_partial<VEC>(xrow[u] + f, width, xv[u]);
          load_partial<VEC>(yrow[u] + f, width, yv[u]);
        }
      }
#pragma unroll
      for (int u = 0; u < kEdgesInFlight; ++u) {
#pragma unroll
        for (int i = 0; i < VEC; ++i) dot[u] += xv[u][i] * yv[u][i];
      }
    }
#pragma unroll
    for (int u = 0; u < kEdgesInFlight; ++u) {
      for (int offset = tpe / 2; offset > 0; offset /= 2) dot[u] += __shfl_xor_sync(mask, dot[u], offset, tpe);
    }
    if (lane < n) {  // lane u writes edge e0 + u
      float d = dot[0];
#pragma unroll
      for (int u = 1; u < kEdgesInFlight; ++u) d = lane == u ? dot[u] : d;
      out[e0 + lane] = scale_by_a ? d * load_f32(a.values[e0 + lane]) : d;
    }
  }
}

template <class V, class I>
__global__ void scale_by_values_kernel(const V* values, int64_t n, float* out) {
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e < n) out[e] *= load_f32(values[e]);
}

}  // namespace

template <class V, class I>
void sddmm_csr_edge_group(Context& ctx, const CsrView<V, I>& a, DenseView<const V> x,
                          DenseView<const V> y, bool scale_by_a, float* out, int tpe, int vec,
                          int64_t ept) {
  TSR_CHECK(tpe >= 1 && tpe <= kWarp && (tpe & (tpe - 1)) == 0, "sddmm_csr_edge_group: tpe = ", tpe,
            " must be a power of two in [1, 32]");
  TSR_CHECK(tpe >= kEdgesInFlight, "sddmm_csr_edge_group: tpe = ", tpe, " must be at least ",
            kEdgesInFlight, " (one writing lane per edge in flight)");
  TSR_CHECK(ept >= 1, "sddmm_csr_edge_group: ept = ", ept, " must be positive");
  if (vec > 1) {
    const auto aligned = [&](const void* p) { return reinterpret_cast<uintptr_t>(p) % (vec * sizeof(V)) == 0; };
    TSR_CHECK(x.ld % vec == 0 && y.ld % vec == 0 && aligned(x.data) && aligned(y.data),
              "sddmm_csr_edge_group: vec=", vec, " needs X and Y rows aligned to ", vec,
              " elements (leading dimensions ", x.ld, ", ", y.ld, ")");
  }
  if (a.rows == 0 || a.nnz == 0) return;
  const int64_t teams = (a.nnz + ept - 1) / ept;
  const unsigned blocks = grid_for(teams, kEdgeGroupThreads / tpe);
  const auto stream = static_cast<cudaStream_t>(ctx.stream());
  switch (vec) {
    case 1:
      sddmm_csr_edge_group_kernel<V, I, 1><<<blocks, kEdgeGroupThreads, 0, stream>>>(a, x, y, scale_by_a, out, tpe, ept);
      break;
    case 2:
      sddmm_csr_edge_group_kernel<V, I, 2><<<blocks, kEdgeGroupThreads, 0, stream>>>(a, x, y, scale_by_a, out, tpe, ept);
      break;
    case 4:
      sddmm_csr_edge_group_kernel<V, I, 4><<<blocks, kEdgeGroupThreads, 0, stream>>>(a, x, y, scale_by_a, out, tpe, ept);
      break;
    default: TSR_FAIL("sddmm_csr_edge_group: vec = ", vec, " must be 1, 2 or 4");
  }
  TSR_CUDA_CHECK_LAUNCH("sddmm_csr_edge_group");
}

template <class V, class I>
void scale_by_values(Context& ctx, const CsrView<V, I>& a, float* out) {
  if (a.nnz == 0) return;
  scale_by_values_kernel<V, I><<<grid_for(a.nnz, 256), 256, 0, static_cast<cudaStream_t>(ctx.stream())>>>(
      a.values, a.nnz, out);
  TSR_CUDA_CHECK_LAUNCH("scale_by_values");
}

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
                                    DenseView<const V>, bool, float*);                     \
  template void sddmm_csr_edge_group(Context&, const CsrView<V, I>&, DenseView<const V>,   \
                                     DenseView<const V>, bool, float*, int, int, int64_t); \
  template void scale_by_values(Context&, const CsrView<V, I>&, float*);
TSR_FOR_EACH_COMPUTE_TYPE(TSR_INSTANTIATE_SDDMM_CUDA)

}  // namespace tessera::ops::cuda
