// CSR and COO SDDMM on the GPU. One team kernel serves every variant: a team of tpe lanes walks
// a run of edges, each lane owning VEC features per tile, four edges in flight at a time; the
// team's partial dot products meet in a shuffle reduction in a fixed order, and each output is
// written once: deterministic bits, no atomics.
// - sddmm_csr_row_split: a team per row (the run is the row's edges; X[row] stays in L1).
// - sddmm_csr_edge_group: the nonzeros split evenly (ept per team), so a hub row is shared by many
//   teams; a team finds its first row by binary search and follows the rows its edges cross.
// - sddmm_coo_edge_group: the same split over a COO matrix; each edge carries its row.
#include "core/cuda_check.h"
#include "core/error.h"
#include "ops/cuda_common.cuh"
#include "ops/cuda_kernels.h"

namespace tessera::ops::cuda {

namespace {

constexpr int kTeamThreads = 256;  // threads per block (kTeamThreads / tpe teams)
constexpr int kEdgesInFlight = 4;

// How a team finds its edges and their rows.
enum class Walk {
  by_row,      // team t takes row t's edges
  edge_range,  // edges [t * ept, (t + 1) * ept) of a CSR, rows followed through indptr
  coo,         // the same range of a COO: coo_rows[e] is edge e's row (a.indptr unused)
};

// Sums dot[u] over the team's lanes and leaves edge u's total on lane u (u < kEdgesInFlight; the
// other lanes hold copies). A reduce-scatter: the first two butterfly steps each send half the
// edges and keep the other half (2 + 1 shuffles instead of 4 + 4), the rest sum whole values.
// Fixed order: deterministic bits.
__device__ __forceinline__ float team_sum_by_edge(float (&dot)[kEdgesInFlight], int lane, int tpe,
                                                  unsigned mask) {
  static_assert(kEdgesInFlight == 4, "the reduce-scatter below splits four edges over two lane bits");
  const bool upper = lane & 2;  // keeps edges 2, 3; sends 0, 1
  float keep0 = upper ? dot[2] : dot[0], send0 = upper ? dot[0] : dot[2];
  float keep1 = upper ? dot[3] : dot[1], send1 = upper ? dot[1] : dot[3];
  keep0 += __shfl_xor_sync(mask, send0, 2, tpe);
  keep1 += __shfl_xor_sync(mask, send1, 2, tpe);
  const bool odd = lane & 1;  // keeps the odd edge of the pair
  float sum = odd ? keep1 : keep0;
  sum += __shfl_xor_sync(mask, odd ? keep0 : keep1, 1, tpe);
  for (int offset = 4; offset < tpe; offset *= 2) sum += __shfl_xor_sync(mask, sum, offset, tpe);
  return sum;  // edge 2 * bit 1 + bit 0 of the lane, that is lane % 4
}

template <class V, class I, int VEC, Walk WALK>
__global__ void __launch_bounds__(kTeamThreads)
    sddmm_team_kernel(CsrView<V, I> a, const I* coo_rows, DenseView<const V> x,
                      DenseView<const V> y, bool scale_by_a, float* out, int tpe, int64_t ept) {
  // A team per row: every edge in flight is on the row, whose X slice is loaded once a pass.
  // The other walks load X per edge: sharing it when the edges in flight happened to be on one
  // row measured up to 1.3x slower on short-row graphs (teams of one warp diverging).
  constexpr bool kOneRow = WALK == Walk::by_row;
  const int lane = threadIdx.x % tpe;
  const int64_t team = int64_t(blockIdx.x) * (kTeamThreads / tpe) + threadIdx.x / tpe;
  int64_t first = 0, last = 0, row = 0;
  if constexpr (WALK == Walk::coo) {
    first = team * ept;
    if (first >= a.nnz) return;
    last = first + ept < a.nnz ? first + ept : a.nnz;
  } else if constexpr (WALK == Walk::by_row) {
    if (team >= a.rows) return;  // whole teams leave together
    row = team;
    first = a.indptr[row];
    last = a.indptr[row + 1];
    if (first == last) return;
  } else {
    first = team * ept;
    if (first >= a.nnz) return;
    last = first + ept < a.nnz ? first + ept : a.nnz;
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
    row = lo;
  }
  const unsigned mask = team_mask(tpe);
  // COO: no offsets to follow (rows = -1: the row ends load nothing and read INT64_MAX).
  RowEnds<I> ends(a.indptr, WALK == Walk::coo ? -1 : a.rows, row);
  int64_t row_end = ends.current();
  // Rows addressed in bytes from this lane's first feature: a Y row (int32 index) by one 32 x 32
  // -> 64-bit multiply-add, plus one for the stride's high word, so any stride works.
  const int F = int(x.cols);  // < 2^31, checked on the host
  const char* x_at = reinterpret_cast<const char*>(x.data + lane * VEC);
  const char* y_at = reinterpret_cast<const char*>(y.data + lane * VEC);
  const uint64_t x_ld_bytes = uint64_t(x.ld) * sizeof(V), y_ld_bytes = uint64_t(y.ld) * sizeof(V);
  const auto y_row = [&](I j) {
    if constexpr (sizeof(I) == 4) {
      return reinterpret_cast<const V*>(y_at + uint64_t(uint32_t(j)) * y_ld_bytes);
    } else {
      return reinterpret_cast<const V*>(y_at + j * int64_t(y_ld_bytes));
    }
  };
  const auto x_row = [&](int64_t r) { return reinterpret_cast<const V*>(x_at + uint64_t(r) * x_ld_bytes); };
  const int step = tpe * VEC;  // features a team covers per pass
  for (int64_t e0 = first; e0 < last; e0 += kEdgesInFlight) {
    const int n = last - e0 < kEdgesInFlight ? int(last - e0) : kEdgesInFlight;
    const V* xrow[kEdgesInFlight];
    const V* yrow[kEdgesInFlight];
#pragma unroll
    for (int u = 0; u < kEdgesInFlight; ++u) {
      if (u < n) {
        if constexpr (WALK == Walk::coo) {
          row = int64_t(coo_rows[e0 + u]);
        } else {
          while (e0 + u >= row_end) {
            ++row;
            row_end = ends.advance();
          }
        }
        xrow[u] = x_row(row);
        yrow[u] = y_row(a.indices[e0 + u]);
      } else {  // past the team's last edge: repeat the first one, never written
        xrow[u] = xrow[0];
        yrow[u] = yrow[0];
      }
    }
    float dot[kEdgesInFlight] = {};
    for (int f = lane * VEC; f < F; f += step) {
      const int width = F - f >= VEC ? VEC : F - f;
      float xv[kOneRow ? 1 : kEdgesInFlight][VEC], yv[kEdgesInFlight][VEC];
#pragma unroll
      for (int u = 0; u < kEdgesInFlight; ++u) {
        if (width == VEC) {
          if (!kOneRow || u == 0) load_vec<VEC>(xrow[u], xv[kOneRow ? 0 : u]);
          load_vec<VEC>(yrow[u], yv[u]);
        } else {
          if (!kOneRow || u == 0) load_partial<VEC>(xrow[u], width, xv[kOneRow ? 0 : u]);
          load_partial<VEC>(yrow[u], width, yv[u]);
        }
      }
#pragma unroll
      for (int u = 0; u < kEdgesInFlight; ++u) {
#pragma unroll
        for (int i = 0; i < VEC; ++i) dot[u] += xv[kOneRow ? 0 : u][i] * yv[u][i];
        xrow[u] += step;
        yrow[u] += step;
      }
    }
    const float d = team_sum_by_edge(dot, lane, tpe, mask);
    if (lane < n) {  // lane u writes edge e0 + u
      out[e0 + lane] = scale_by_a ? d * load_f32(a.values[e0 + lane]) : d;
    }
  }
}

template <class V, class I>
__global__ void scale_by_values_kernel(const V* values, int64_t n, float* out) {
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e < n) out[e] *= load_f32(values[e]);
}

// Checks the team knobs and launches the team kernel over `teams` teams.
template <Walk WALK, class V, class I>
void launch_teams(Context& ctx, const char* name, const CsrView<V, I>& a, const I* coo_rows,
                  DenseView<const V> x, DenseView<const V> y, bool scale_by_a, float* out, int tpe,
                  int vec, int64_t ept, int64_t teams) {
  TSR_CHECK(tpe >= kEdgesInFlight && tpe <= kWarp && (tpe & (tpe - 1)) == 0, name, ": ",
            WALK == Walk::by_row ? "tpr" : "tpe", " = ", tpe, " must be a power of two in [", kEdgesInFlight,
            ", 32] (one writing lane per edge in flight)");
  if (vec > 1) {
    const auto aligned = [&](const void* p) { return reinterpret_cast<uintptr_t>(p) % (vec * sizeof(V)) == 0; };
    TSR_CHECK(x.ld % vec == 0 && y.ld % vec == 0 && aligned(x.data) && aligned(y.data), name,
              ": vec=", vec, " needs X and Y rows aligned to ", vec, " elements (leading dimensions ",
              x.ld, ", ", y.ld, ")");
  }
  TSR_CHECK(x.cols <= int64_t(INT32_MAX) - kWarp * 4, name, ": F = ", x.cols,
            " features is more than the kernel's 32-bit feature offsets hold");
  if (a.rows == 0 || a.nnz == 0) return;
  const unsigned blocks = grid_for(teams, kTeamThreads / tpe);
  const auto stream = static_cast<cudaStream_t>(ctx.stream());
  switch (vec) {
    case 1:
      sddmm_team_kernel<V, I, 1, WALK><<<blocks, kTeamThreads, 0, stream>>>(a, coo_rows, x, y, scale_by_a, out, tpe, ept);
      break;
    case 2:
      sddmm_team_kernel<V, I, 2, WALK><<<blocks, kTeamThreads, 0, stream>>>(a, coo_rows, x, y, scale_by_a, out, tpe, ept);
      break;
    case 4:
      sddmm_team_kernel<V, I, 4, WALK><<<blocks, kTeamThreads, 0, stream>>>(a, coo_rows, x, y, scale_by_a, out, tpe, ept);
      break;
    default: TSR_FAIL(name, ": vec = ", vec, " must be 1, 2 or 4");
  }
  TSR_CUDA_CHECK_LAUNCH(name);
}

}  // namespace

template <class V, class I>
void sddmm_csr_edge_group(Context& ctx, const CsrView<V, I>& a, DenseView<const V> x,
                          DenseView<const V> y, bool scale_by_a, float* out, int tpe, int vec,
                          int64_t ept) {
  TSR_CHECK(ept >= 1, "sddmm_csr_edge_group: ept = ", ept, " must be positive");
  launch_teams<Walk::edge_range>(ctx, "sddmm_csr_edge_group", a, (const I*)nullptr, x, y,
                                 scale_by_a, out, tpe, vec, ept, (a.nnz + ept - 1) / ept);
}

template <class V, class I>
void sddmm_coo_edge_group(Context& ctx, const CooView<V, I>& a, DenseView<const V> x,
                          DenseView<const V> y, bool scale_by_a, float* out, int tpe, int vec,
                          int64_t ept) {
  TSR_CHECK(ept >= 1, "sddmm_coo_edge_group: ept = ", ept, " must be positive");
  const CsrView<V, I> edges{a.rows, a.cols, a.nnz, nullptr, a.col, a.values, a.space};
  launch_teams<Walk::coo>(ctx, "sddmm_coo_edge_group", edges, a.row, x, y, scale_by_a, out, tpe,
                          vec, ept, (a.nnz + ept - 1) / ept);
}

template <class V, class I>
void sddmm_csr_row_split(Context& ctx, const CsrView<V, I>& a, DenseView<const V> x,
                         DenseView<const V> y, bool scale_by_a, float* out, int tpr, int vec) {
  launch_teams<Walk::by_row>(ctx, "sddmm_csr_row_split", a, (const I*)nullptr, x, y, scale_by_a,
                             out, tpr, vec, 0, a.rows);
}

template <class V, class I>
void scale_by_values(Context& ctx, const CsrView<V, I>& a, float* out) {
  if (a.nnz == 0) return;
  scale_by_values_kernel<V, I><<<grid_for(a.nnz, 256), 256, 0, static_cast<cudaStream_t>(ctx.stream())>>>(
      a.values, a.nnz, out);
  TSR_CUDA_CHECK_LAUNCH("scale_by_values");
}

#define TSR_INSTANTIATE_SDDMM_CUDA(V, I)                                                   \
  template void sddmm_csr_row_split(Context&, const CsrView<V, I>&, DenseView<const V>,    \
                                    DenseView<const V>, bool, float*, int, int);           \
  template void sddmm_csr_edge_group(Context&, const CsrView<V, I>&, DenseView<const V>,   \
                                     DenseView<const V>, bool, float*, int, int, int64_t); \
  template void sddmm_coo_edge_group(Context&, const CooView<V, I>&, DenseView<const V>,   \
                                     DenseView<const V>, bool, float*, int, int, int64_t); \
  template void scale_by_values(Context&, const CsrView<V, I>&, float*);
TSR_FOR_EACH_COMPUTE_TYPE(TSR_INSTANTIATE_SDDMM_CUDA)

}  // namespace tessera::ops::cuda
