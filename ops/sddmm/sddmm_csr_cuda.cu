// CSR and COO SDDMM on the GPU. Team kernels: a team of tpe lanes walks a run of edges, each lane
// owning VEC features per tile, several edges in flight at a time; the team's partial dot
// products meet in a shuffle reduction in a fixed order, and each output is written once:
// deterministic bits, no atomics.
// - sddmm_csr_row_split: a team per row, four edges in flight, X[row]'s slice loaded once a pass
//   (sddmm_row_kernel).
// - sddmm_csr_edge_group: the nonzeros split evenly (ept per team), so a hub row is shared by many
//   teams; a team finds its first row by binary search and follows the rows its edges cross.
// - sddmm_coo_edge_group: the same split over a COO matrix; each edge carries its row.
// - sddmm_csr_edge_batch: edge_group's split walked as the SpMM merge path walks its stretch
//   (indices a chunk ahead, eight gathers in flight, X[row] held per row); faster on the large
//   graphs at every F, slower on small matrices (bench/RESULTS.md).
// - sddmm_csr_row_batch: a warp per row, its teams taking the row's edges in turn in batches of
//   eight gathers each, indices 64 at a time; for rows of moderate, even length.
#include <type_traits>

#include "core/cuda_check.h"
#include "core/error.h"
#include "ops/cuda_common.cuh"
#include "ops/cuda_kernels.h"

namespace tessera::ops::cuda {

namespace {

constexpr int kTeamThreads = 256;  // threads per block (kTeamThreads / tpe teams)
constexpr int kEdgesInFlight = 4;
constexpr int kBatch = 8;  // Y rows an edge-batch team gathers before its first product
// Column indices each lane of an edge-batch team loads per chunk (a chunk is 2 tpe edges: one
// batch in a team of 4, several in wider ones).
constexpr int kIndicesPerLane = 2;
// An edge-batch team's run of edges is addressed by 32-bit offsets.
constexpr int64_t kMaxEdgesPerTeam = int64_t(1) << 30;

// How an edge-group team finds its edges and their rows.
enum class Walk {
  edge_range,  // edges [t * ept, (t + 1) * ept) of a CSR, rows followed through indptr
  coo,         // the same range of a COO: coo_rows[e] is edge e's row (a.indptr unused)
};

static_assert(kEdgesInFlight == 4, "team_sum_by_edge (cuda_common.cuh) reduces four edges at a time");

// The row holding edge e of a CSR (0 <= e < nnz): the smallest r with indptr[r + 1] > e.
template <class I>
__device__ __forceinline__ int64_t row_of_edge(const I* indptr, int64_t rows, int64_t e) {
  int64_t lo = 0, hi = rows - 1;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (int64_t(indptr[mid + 1]) > e) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo;
}

template <class V, class I, int VEC, Walk WALK>
__global__ void __launch_bounds__(kTeamThreads)
    sddmm_team_kernel(CsrView<V, I> a, const I* coo_rows, DenseView<const V> x,
                      DenseView<const V> y, bool scale_by_a, float* out, int tpe, int64_t ept) {
  // X is loaded per edge: sharing it when the edges in flight happened to be on one row measured
  // up to 1.3x slower on short-row graphs (teams of one warp diverging).
  const int lane = threadIdx.x % tpe;
  const int64_t team = int64_t(blockIdx.x) * (kTeamThreads / tpe) + threadIdx.x / tpe;
  int64_t first = 0, last = 0, row = 0;
  if constexpr (WALK == Walk::coo) {
    first = team * ept;
    if (first >= a.nnz) return;
    last = first + ept < a.nnz ? first + ept : a.nnz;
  } else {
    first = team * ept;
    if (first >= a.nnz) return;
    last = first + ept < a.nnz ? first + ept : a.nnz;
    row = row_of_edge(a.indptr, a.rows, first);
  }
  const unsigned mask = team_mask(tpe);
  // COO: no offsets to follow (rows = -1: the row ends load nothing and read INT64_MAX).
  RowEnds<I> ends(a.indptr, WALK == Walk::coo ? -1 : a.rows, row);
  int64_t row_end = ends.current();
  // Rows addressed in bytes from this lane's first feature (dense_row).
  const int F = int(x.cols);  // < 2^31, checked on the host
  const char* x_at = reinterpret_cast<const char*>(x.data + lane * VEC);
  const char* y_at = reinterpret_cast<const char*>(y.data + lane * VEC);
  const uint64_t x_ld_bytes = uint64_t(x.ld) * sizeof(V), y_ld_bytes = uint64_t(y.ld) * sizeof(V);
  const auto y_row = [&](I j) { return dense_row<V>(y_at, j, y_ld_bytes); };
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
      if constexpr (sizeof(V) == 2) {
        // 16-bit values: every edge's X and Y under one branch and kept packed until the
        // products, so all of a step's loads are issued before the first is waited on (widened in
        // each edge's own branch, as f32 is below, each edge's loads were waited on in turn:
        // 1.1-1.6x the time on the H200, bench/RESULTS.md, session 20).
        PackedVec<VEC, V> xv[kEdgesInFlight], yv[kEdgesInFlight];
        if (F - f >= VEC) {
#pragma unroll
          for (int u = 0; u < kEdgesInFlight; ++u) {
            xv[u].load_read_only(xrow[u]);
            yv[u].load_read_only(yrow[u]);
          }
        } else {
#pragma unroll
          for (int u = 0; u < kEdgesInFlight; ++u) {
            xv[u].load_partial(xrow[u], F - f);
            yv[u].load_partial(yrow[u], F - f);
          }
        }
#pragma unroll
        for (int u = 0; u < kEdgesInFlight; ++u) {
#pragma unroll
          for (int i = 0; i < VEC; ++i) dot[u] += xv[u](i) * yv[u](i);
        }
      } else {
        // f32: a branch an edge (80 registers at vec = 4). The one-branch form above took 98
        // and ran up to 1.4x slower on the H200 (bench/RESULTS.md, session 20).
        const int width = F - f >= VEC ? VEC : F - f;
        float xv[kEdgesInFlight][VEC], yv[kEdgesInFlight][VEC];
#pragma unroll
        for (int u = 0; u < kEdgesInFlight; ++u) {
          if (width == VEC) {
            load_vec<VEC>(xrow[u], xv[u]);
            load_vec<VEC>(yrow[u], yv[u]);
          } else {
            load_partial<VEC>(xrow[u], width, xv[u]);
            load_partial<VEC>(yrow[u], width, yv[u]);
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

// A team of tpe lanes per row (rows with edges; a row's X slice loaded once a pass).
template <class V, class I, int VEC>
__global__ void __launch_bounds__(kTeamThreads)
    sddmm_row_kernel(CsrView<V, I> a, DenseView<const V> x, DenseView<const V> y, bool scale_by_a,
                     float* out, int tpe) {
  const int lane = threadIdx.x % tpe;
  const int64_t row = int64_t(blockIdx.x) * (kTeamThreads / tpe) + threadIdx.x / tpe;
  if (row >= a.rows) return;  // whole teams leave together
  const int64_t first = a.indptr[row], last = a.indptr[row + 1];
  if (first == last) return;
  const unsigned mask = team_mask(tpe);
  // Rows addressed in bytes from this lane's first feature (dense_row).
  const int F = int(x.cols);  // < 2^31, checked on the host
  const char* y_at = reinterpret_cast<const char*>(y.data + lane * VEC);
  const uint64_t y_ld_bytes = uint64_t(y.ld) * sizeof(V);
  const auto y_row = [&](I j) { return dense_row<V>(y_at, j, y_ld_bytes); };
  const V* x_row = reinterpret_cast<const V*>(reinterpret_cast<const char*>(x.data + lane * VEC) +
                                              uint64_t(row) * uint64_t(x.ld) * sizeof(V));
  const int step = tpe * VEC;  // features a team covers per pass
  for (int64_t e0 = first; e0 < last; e0 += kEdgesInFlight) {
    const int n = last - e0 < kEdgesInFlight ? int(last - e0) : kEdgesInFlight;
    const V* xrow = x_row;
    const V* yrow[kEdgesInFlight];
#pragma unroll
    for (int u = 0; u < kEdgesInFlight; ++u) {
      // past the row's last edge: repeat the first one, never written
      yrow[u] = u < n ? y_row(a.indices[e0 + u]) : yrow[0];
    }
    float dot[kEdgesInFlight] = {};
    for (int f = lane * VEC; f < F; f += step) {
      if constexpr (sizeof(V) == 2) {
        // 16-bit values: all of a step's loads under one branch, kept packed until the products
        // (as in sddmm_team_kernel; 0.40-0.63x the time on the H200's arxiv-like graphs).
        PackedVec<VEC, V> xv, yv[kEdgesInFlight];
        if (F - f >= VEC) {
          xv.load_read_only(xrow);
#pragma unroll
          for (int u = 0; u < kEdgesInFlight; ++u) yv[u].load_read_only(yrow[u]);
        } else {
          xv.load_partial(xrow, F - f);
#pragma unroll
          for (int u = 0; u < kEdgesInFlight; ++u) yv[u].load_partial(yrow[u], F - f);
        }
#pragma unroll
        for (int u = 0; u < kEdgesInFlight; ++u) {
#pragma unroll
          for (int i = 0; i < VEC; ++i) dot[u] += xv(i) * yv[u](i);
          yrow[u] += step;
        }
      } else {
        // f32: a branch an edge. The one-branch form was 0.89-0.95x the time on arxiv-like
        // graphs (long rows, where the default does not take the row split) but 1.05-1.08x on
        // luxembourg (rows of 1-6 edges, where it does), H200, session 20.
        const int width = F - f >= VEC ? VEC : F - f;
        float xv[VEC], yv[kEdgesInFlight][VEC];
        if (width == VEC) {
          load_vec<VEC>(xrow, xv);
        } else {
          load_partial<VEC>(xrow, width, xv);
        }
#pragma unroll
        for (int u = 0; u < kEdgesInFlight; ++u) {
          if (width == VEC) {
            load_vec<VEC>(yrow[u], yv[u]);
          } else {
            load_partial<VEC>(yrow[u], width, yv[u]);
          }
        }
#pragma unroll
        for (int u = 0; u < kEdgesInFlight; ++u) {
#pragma unroll
          for (int i = 0; i < VEC; ++i) dot[u] += xv[i] * yv[u][i];
          yrow[u] += step;
        }
      }
      xrow += step;
    }
    const float d = team_sum_by_edge(dot, lane, tpe, mask);
    if (lane < n) {  // lane u writes edge e0 + u
      out[e0 + lane] = scale_by_a ? d * load_f32(a.values[e0 + lane]) : d;
    }
  }
}

// The batch edge whose total team_sums_of_batch leaves on `lane`: 4 bit0 + 2 bit1 + bit2 of the
// lane (lanes from 8 on hold copies), or in a team of 4, 4 bit0 + 2 bit1 (and the next edge).
__device__ __forceinline__ int batch_edge_of_lane(int lane, int tpe) {
  return 4 * (lane & 1) + 2 * ((lane >> 1) & 1) + (tpe == 4 ? 0 : (lane >> 2) & 1);
}

// The totals over a team's tpe lanes (a power of two, 4 to 32) of a batch's kBatch dot products,
// by halving steps over lane bits 0, 1 and 2 (each keeps half the values and adds the partner's
// copy of them: 4 + 2 + 1 shuffles), then whole sums over the lane bits past 2: this lane's edge
// is batch_edge_of_lane. Fixed order: deterministic bits.
struct BatchSums {
  float first, second;  // the totals of batch_edge_of_lane and (teams of 4) the edge after it
};
__device__ __forceinline__ BatchSums team_sums_of_batch(const float (&dot)[kBatch], int lane,
                                                        int tpe, unsigned mask) {
  static_assert(kBatch == 8, "three halving steps");
  const bool b0 = lane & 1, b1 = lane & 2, b2 = lane & 4;
  float h4[4], h2[2];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float keep = b0 ? dot[4 + i] : dot[i], send = b0 ? dot[i] : dot[4 + i];
    h4[i] = keep + __shfl_xor_sync(mask, send, 1, tpe);
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const float keep = b1 ? h4[2 + i] : h4[i], send = b1 ? h4[i] : h4[2 + i];
    h2[i] = keep + __shfl_xor_sync(mask, send, 2, tpe);
  }
  if (tpe == 4) return {h2[0], h2[1]};
  float s = (b2 ? h2[1] : h2[0]) + __shfl_xor_sync(mask, b2 ? h2[0] : h2[1], 4, tpe);
  for (int offset = 8; offset < tpe; offset *= 2) s += __shfl_xor_sync(mask, s, offset, tpe);
  return {s, 0.0f};
}

// csr.edge_batch: edges [team * ept, +ept) per team of tpe lanes, rows followed through indptr.
// Built as the SpMM merge path is: column indices loaded one chunk ahead and handed out by
// shuffles, batches of kBatch Y rows gathered before the first product, and X[row]'s slice held in
// registers while the team stays on the row (one X load a row, not one an edge). F wider than a
// team's pass (tpe * VEC) is walked once a pass: later passes add to the outputs the first wrote,
// each output read back by the lane that wrote it. Deterministic: a fixed order throughout.
template <class V, class I, int VEC>
__global__ void __maxnreg__(80)
    sddmm_edge_batch_kernel(CsrView<V, I> a, DenseView<const V> x, DenseView<const V> y,
                            bool scale_by_a, float* out, int tpe, int64_t ept) {
  const int lane = threadIdx.x % tpe;
  const int64_t team = int64_t(blockIdx.x) * (kTeamThreads / tpe) + threadIdx.x / tpe;
  const int64_t first = team * ept;
  if (first >= a.nnz) return;  // whole teams leave together
  const int span = int(a.nnz - first < ept ? a.nnz - first : ept);  // ept <= 2^30 (host check)
  const int64_t row0 = row_of_edge(a.indptr, a.rows, first);
  const unsigned mask = team_mask(tpe);
  const int F = int(x.cols);  // < 2^31 - 128, checked on the host
  const int step = tpe * VEC;
  const int passes = F > 0 ? (F + step - 1) / step : 1;  // F = 0: one pass writing zeros
  const I* col_at = a.indices + first;
  float* out_at = out + first;
  const uint64_t x_ld_bytes = uint64_t(x.ld) * sizeof(V), y_ld_bytes = uint64_t(y.ld) * sizeof(V);
  const int chunk = kIndicesPerLane * tpe;  // a multiple of kBatch
  // This lane's outputs in each batch (team_sums_of_batch): `my_edge` and, in a team of 4,
  // my_edge + 1.
  const int my_edge = batch_edge_of_lane(lane, tpe);
  const bool writer = tpe == 4 || lane < kBatch;
  for (int pass = 0; pass < passes; ++pass) {
    const int f = pass * step + lane * VEC;
    const int width = f >= F ? 0 : (F - f >= VEC ? VEC : F - f);  // features this lane owns
    const bool full_pass = (pass + 1) * step <= F;                   // width == VEC on every lane
    const bool last_pass = pass == passes - 1;
    // Rows in bytes from this lane's first feature of the pass (a lane past F loads nothing).
    const char* x_at = reinterpret_cast<const char*>(x.data + (width > 0 ? f : 0));
    const char* y_at = reinterpret_cast<const char*>(y.data + (width > 0 ? f : 0));
    const auto y_row = [&](I j) { return dense_row<V>(y_at, j, y_ld_bytes); };
    float xv[VEC] = {};  // X[row]'s slice of this pass
    const auto load_x = [&](int64_t r) {
      const V* p = reinterpret_cast<const V*>(x_at + uint64_t(r) * x_ld_bytes);
      if (width == VEC) {
        load_vec<VEC>(p, xv);
      } else if (width > 0) {
        load_partial<VEC>(p, width, xv);
      }
    };
    // The team's rows from row0, their ends as offsets from `first`.
    StretchRowEnds<I> ends(a.indptr, a.rows, row0, first);
    int row_end = ends.current();
    int64_t row = row0;
    load_x(row);
    // Column indices of the next chunk, one chunk ahead: entry q of a chunk is lane q / 2's
    // (q % 2)-th.
    I next_col[kIndicesPerLane];
#pragma unroll
    for (int e = 0; e < kIndicesPerLane; ++e) {
      const int q = lane * kIndicesPerLane + e;
      next_col[e] = q < span ? col_at[q] : I(0);
    }
    for (int p0 = 0; p0 < span; p0 += chunk) {
      I col[kIndicesPerLane];
#pragma unroll
      for (int e = 0; e < kIndicesPerLane; ++e) {
        col[e] = next_col[e];
        const int q = p0 + chunk + lane * kIndicesPerLane + e;
        if (q < span) next_col[e] = col_at[q];
      }
      const int in_chunk = span - p0 < chunk ? span - p0 : chunk;
      for (int k = 0; k < in_chunk; k += kBatch) {
        const int n = in_chunk - k < kBatch ? in_chunk - k : kBatch;  // edges of this batch
        const bool writes_first = writer && my_edge < n;
        const bool writes_second = tpe == 4 && my_edge + 1 < n;
        // After the first pass: what the earlier passes left in this lane's outputs, read now,
        // in flight with the gathers.
        float earlier_first = 0.0f, earlier_second = 0.0f;
        if (pass > 0) {
          if (writes_first) earlier_first = out_at[p0 + k + my_edge];
          if (writes_second) earlier_second = out_at[p0 + k + my_edge + 1];
        }
        PackedVec<VEC, V> yv[kBatch];
        if (full_pass) {
          // Every lane's VEC features inside F: every slot gathers, no per-lane branches. A slot
          // past the batch (u >= n) gathers a valid Y row (the chunk's entries past the team's
          // edges hold 0 or an index of an earlier chunk) into a sum that is never written:
          // slots' sums never mix.
#pragma unroll
          for (int u = 0; u < kBatch; ++u) {
            const int q = k + u;  // < chunk
            const I j = __shfl_sync(mask, col[q % kIndicesPerLane], q / kIndicesPerLane, tpe);
            yv[u].load_read_only(y_row(j));
          }
        } else {
#pragma unroll
          for (int u = 0; u < kBatch; ++u) {
            const int q = k + u;  // < chunk; past the batch (u >= n) an index not loaded from
            const I j = __shfl_sync(mask, col[q % kIndicesPerLane], q / kIndicesPerLane, tpe);
            if (u < n && width == VEC) {
              yv[u].load_read_only(y_row(j));
            } else if (u < n && width > 0) {
              yv[u].load_partial(y_row(j), width);
            } else {
              yv[u].set_zero();
            }
          }
        }
        float dot[kBatch];
        if (p0 + k + n <= row_end) {  // the whole batch on the team's current row (the common case)
#pragma unroll
          for (int u = 0; u < kBatch; ++u) {
            dot[u] = 0.0f;
#pragma unroll
            for (int i = 0; i < VEC; ++i) dot[u] += xv[i] * yv[u](i);
          }
        } else {
#pragma unroll
          for (int u = 0; u < kBatch; ++u) {
            if (u < n && p0 + k + u >= row_end) {  // a new row (empty ones skipped)
              do {
                ++row;
                row_end = ends.advance();
              } while (p0 + k + u >= row_end);
              load_x(row);
            }
            dot[u] = 0.0f;
#pragma unroll
            for (int i = 0; i < VEC; ++i) dot[u] += xv[i] * yv[u](i);
          }
        }
        const BatchSums sums = team_sums_of_batch(dot, lane, tpe, mask);
        const auto finish = [&](int e, float total, float earlier) {
          float v = pass > 0 ? earlier + total : total;
          if (last_pass && scale_by_a) v *= load_f32(a.values[first + p0 + k + e]);
          out_at[p0 + k + e] = v;
        };
        if (writes_first) finish(my_edge, sums.first, earlier_first);
        if (writes_second) finish(my_edge + 1, sums.second, earlier_second);
      }
    }
  }
}

// csr.row_batch: a warp per row. Its 32 / tpe teams of tpe lanes take the row's edges in turn
// (edge q of a batch to team q % teams), kBatch each, so a batch gathers 8 * 32 / tpe Y rows at
// once; the row's column indices come 64 at a time (entry q of a chunk is lane q % 32's
// (q / 32)-th, one coalesced load each, the next chunk's in flight under the current one) and are
// handed out by shuffles. F past one pass (tpe * vec) is walked inside the batch: the dot products
// stay in registers across the passes, X[row]'s slice reloaded per pass (an L1 hit). No search for
// a row and no per-team set-up, for rows of moderate, even length (FEM matrices), where the
// edge-split kernels' set-up and short runs left them behind cuSPARSE's warp-per-row kernel.
// Deterministic: a fixed order throughout.
template <class V, class I, int VEC>
__global__ void __launch_bounds__(kTeamThreads, 3)
    sddmm_row_batch_kernel(CsrView<V, I> a, DenseView<const V> x, DenseView<const V> y,
                           bool scale_by_a, float* out, int tpe) {
  constexpr int kChunk = 2 * kWarp;  // column indices a warp holds: two per lane
  const int lane = threadIdx.x % kWarp;
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (row >= a.rows) return;  // whole warps leave together
  const int64_t first = a.indptr[row], len = int64_t(a.indptr[row + 1]) - first;
  if (len == 0) return;
  const int teams = kWarp / tpe, team = lane / tpe, tl = lane % tpe;
  const int F = int(x.cols);  // < 2^31 - 128, checked on the host
  const int step = tpe * VEC;
  const int passes = F > 0 ? (F + step - 1) / step : 1;  // F = 0: one pass writing zeros
  const int full_passes = F / step;                       // passes with every lane's VEC inside F
  const int per_batch = kBatch * teams;                   // <= kChunk (tpe >= 4)
  const I* col_at = a.indices + first;
  const V* x_row = reinterpret_cast<const V*>(reinterpret_cast<const char*>(x.data) +
                                              uint64_t(row) * uint64_t(x.ld) * sizeof(V));
  const uint64_t y_ld_bytes = uint64_t(y.ld) * sizeof(V);
  // This lane's outputs in each batch (team_sums_of_batch): slot batch_edge_of_lane of its team
  // and, in a team of 4, the next slot; slot u of team s is the batch's edge u * teams + s, so
  // these are the batch's edges my_q and my_q + teams.
  const int my_q = batch_edge_of_lane(tl, tpe) * teams + team;
  const bool writer = tpe == 4 || tl < kBatch;
  I next_col[2];
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    const int64_t q = e * kWarp + lane;
    next_col[e] = q < len ? col_at[q] : I(0);
  }
  for (int64_t p0 = 0; p0 < len; p0 += kChunk) {
    I col[2];
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      col[e] = next_col[e];
      const int64_t q = p0 + kChunk + e * kWarp + lane;
      next_col[e] = q < len ? col_at[q] : I(0);  // 0 past the row: see the full passes below
    }
    const int in_chunk = len - p0 < kChunk ? int(len - p0) : kChunk;
    for (int k = 0; k < in_chunk; k += per_batch) {
      const int n = in_chunk - k < per_batch ? in_chunk - k : per_batch;  // edges of this batch
      // The batch's column indices: slot u's edges k + u * teams + [0, teams) lie in one half of
      // the chunk (teams divides 32), so every lane shuffles the same half.
      I j[kBatch];
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int q = k + u * teams;
        const I half = q >= kWarp ? col[1] : col[0];
        j[u] = __shfl_sync(0xffffffffu, half, (q + team) & (kWarp - 1));
      }
      float dot[kBatch] = {};
      for (int pass = 0; pass < passes; ++pass) {
        const int f = pass * step + tl * VEC;
        PackedVec<VEC, V> yv[kBatch];
        float xv[VEC] = {};
        if (pass < full_passes) {
          // Every lane's VEC features inside F: no branches, every slot gathers. A team whose
          // edge of slot u is past the batch gathers Y row j[u] = 0 (the chunk's entries past the
          // row are 0, and Y has rows when the row has edges; an L1 hit after the first) into a
          // sum that goes nowhere: teams' and slots' sums never mix. (Per-lane branches here,
          // as in the ragged pass below, took 18 instructions a gather instead of 8.)
          load_vec<VEC>(x_row + f, xv);
          const char* y_at = reinterpret_cast<const char*>(y.data + f);
#pragma unroll
          for (int u = 0; u < kBatch; ++u) {
            if constexpr (sizeof(I) == 4) {  // Y's stride under 2 GiB: can_implement's condition
              yv[u].load_read_only(reinterpret_cast<const V*>(
                  offset_by_product(y_at, uint32_t(j[u]), uint32_t(y_ld_bytes))));
            } else {
              yv[u].load_read_only(dense_row<V>(y_at, j[u], y_ld_bytes));
            }
          }
        } else {  // the ragged last pass
          const int width = f >= F ? 0 : (F - f >= VEC ? VEC : F - f);  // features this lane owns
          if (width == VEC) {
            load_vec<VEC>(x_row + f, xv);
          } else if (width > 0) {
            load_partial<VEC>(x_row + f, width, xv);
          }
          const char* y_at = reinterpret_cast<const char*>(y.data + (width > 0 ? f : 0));
#pragma unroll
          for (int u = 0; u < kBatch; ++u) {
            const bool in = u * teams + team < n;
            if (in && width == VEC) {
              yv[u].load_read_only(dense_row<V>(y_at, j[u], y_ld_bytes));
            } else if (in && width > 0) {
              yv[u].load_partial(dense_row<V>(y_at, j[u], y_ld_bytes), width);
            } else {
              yv[u].set_zero();
            }
          }
        }
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
#pragma unroll
          for (int i = 0; i < VEC; ++i) dot[u] += xv[i] * yv[u](i);
        }
      }
      // The whole warp is here (its row's batches are warp-uniform): a constant full mask, where a
      // team's mask costs a convergence check a shuffle.
      const BatchSums sums = team_sums_of_batch(dot, tl, tpe, 0xffffffffu);
      const int64_t batch_first = first + p0 + k;  // the batch's edge 0
      const auto finish = [&](int q, float total) {
        out[batch_first + q] = scale_by_a ? total * load_f32(a.values[batch_first + q]) : total;
      };
      if (writer && my_q < n) finish(my_q, sums.first);
      if (tpe == 4 && my_q + teams < n) finish(my_q + teams, sums.second);
    }
  }
}

template <class V, class I>
__global__ void scale_by_values_kernel(const V* values, int64_t n, float* out) {
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e < n) out[e] *= load_f32(values[e]);
}

// Calls launch(std::integral_constant<int, VEC>{}) for vec = 1, 2 or 4, the widths the kernels
// are built for (any other is an error naming `name`), then checks the launch.
template <class Launch>
void launch_with_vec(const char* name, int vec, Launch&& launch) {
  switch (vec) {
    case 1: launch(std::integral_constant<int, 1>{}); break;
    case 2: launch(std::integral_constant<int, 2>{}); break;
    case 4: launch(std::integral_constant<int, 4>{}); break;
    default: TSR_FAIL(name, ": vec = ", vec, " must be 1, 2 or 4");
  }
  TSR_CUDA_CHECK_LAUNCH(name);
}

// The checks both team kernels need: a team of 4-32 lanes (a power of two; team_knob names it in
// the message), X and Y rows aligned for vec-wide loads, F within the 32-bit feature offsets.
template <class V>
void check_team_launch(const char* name, const char* team_knob, int tpe, int vec,
                       DenseView<const V> x, DenseView<const V> y) {
  TSR_CHECK(tpe >= kEdgesInFlight && tpe <= kWarp && (tpe & (tpe - 1)) == 0, name, ": ", team_knob,
            " = ", tpe, " must be a power of two in [", kEdgesInFlight,
            ", 32] (one writing lane per edge in flight)");
  if (vec > 1) {
    const auto aligned = [&](const void* p) { return reinterpret_cast<uintptr_t>(p) % (vec * sizeof(V)) == 0; };
    TSR_CHECK(x.ld % vec == 0 && y.ld % vec == 0 && aligned(x.data) && aligned(y.data), name,
              ": vec=", vec, " needs X and Y rows aligned to ", vec, " elements (leading dimensions ",
              x.ld, ", ", y.ld, ")");
  }
  TSR_CHECK(x.cols <= int64_t(INT32_MAX) - kWarp * 4, name, ": F = ", x.cols,
            " features is more than the kernel's 32-bit feature offsets hold");
}

// Checks the team knobs and launches the team kernel over `teams` teams.
template <Walk WALK, class V, class I>
void launch_teams(Context& ctx, const char* name, const CsrView<V, I>& a, const I* coo_rows,
                  DenseView<const V> x, DenseView<const V> y, bool scale_by_a, float* out, int tpe,
                  int vec, int64_t ept, int64_t teams) {
  check_team_launch(name, "tpe", tpe, vec, x, y);
  if (a.rows == 0 || a.nnz == 0) return;
  const unsigned blocks = grid_for(teams, kTeamThreads / tpe);
  const auto stream = static_cast<cudaStream_t>(ctx.stream());
  launch_with_vec(name, vec, [&](auto v) {
    sddmm_team_kernel<V, I, decltype(v)::value, WALK><<<blocks, kTeamThreads, 0, stream>>>(a, coo_rows, x, y, scale_by_a, out, tpe, ept);
  });
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
void sddmm_csr_edge_batch(Context& ctx, const CsrView<V, I>& a, DenseView<const V> x,
                          DenseView<const V> y, bool scale_by_a, float* out, int tpe, int vec,
                          int64_t ept) {
  const char* name = "sddmm_csr_edge_batch";
  check_team_launch(name, "tpe", tpe, vec, x, y);
  TSR_CHECK(ept >= 1 && ept <= kMaxEdgesPerTeam, name, ": ept = ", ept, " must be in [1, ",
            kMaxEdgesPerTeam, "]");
  if (a.rows == 0 || a.nnz == 0) return;
  const unsigned blocks = grid_for((a.nnz + ept - 1) / ept, kTeamThreads / tpe);
  const auto stream = static_cast<cudaStream_t>(ctx.stream());
  launch_with_vec(name, vec, [&](auto v) {
    sddmm_edge_batch_kernel<V, I, decltype(v)::value><<<blocks, kTeamThreads, 0, stream>>>(a, x, y, scale_by_a, out, tpe, ept);
  });
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
  const char* name = "sddmm_csr_row_split";
  check_team_launch(name, "tpr", tpr, vec, x, y);
  if (a.rows == 0 || a.nnz == 0) return;
  const unsigned blocks = grid_for(a.rows, kTeamThreads / tpr);
  const auto stream = static_cast<cudaStream_t>(ctx.stream());
  launch_with_vec(name, vec, [&](auto v) {
    sddmm_row_kernel<V, I, decltype(v)::value><<<blocks, kTeamThreads, 0, stream>>>(a, x, y, scale_by_a, out, tpr);
  });
}

template <class V, class I>
void sddmm_csr_row_batch(Context& ctx, const CsrView<V, I>& a, DenseView<const V> x,
                         DenseView<const V> y, bool scale_by_a, float* out, int tpe, int vec) {
  const char* name = "sddmm_csr_row_batch";
  check_team_launch(name, "tpe", tpe, vec, x, y);
  TSR_CHECK(y.ld <= int64_t(INT32_MAX) / int64_t(sizeof(V)), name, ": Y's leading dimension ", y.ld,
            " is a row stride over 2 GiB; csr.row_batch gathers with 32-bit strides");
  if (a.rows == 0 || a.nnz == 0) return;
  // A warp a row: two a block up to F = 128, eight past it. On the H200 (bench/RESULTS.md,
  // session 23) blocks of two took 0.96-0.99x the time of eight at F = 32-128 (fidapex6's 1651
  // rows then spread over all the SMs, not 206 blocks over 132), but 1.01-1.04x at F = 256-512 on
  // bcsstk33 (neighbouring rows, which share Y rows, on one SM's L1 matter more as rows widen).
  const int threads = x.cols <= 128 ? 2 * kWarp : kTeamThreads;
  const unsigned blocks = grid_for(a.rows, threads / kWarp);
  const auto stream = static_cast<cudaStream_t>(ctx.stream());
  launch_with_vec(name, vec, [&](auto v) {
    sddmm_row_batch_kernel<V, I, decltype(v)::value><<<blocks, threads, 0, stream>>>(a, x, y, scale_by_a, out, tpe);
  });
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
  template void sddmm_csr_edge_batch(Context&, const CsrView<V, I>&, DenseView<const V>,   \
                                     DenseView<const V>, bool, float*, int, int, int64_t); \
  template void sddmm_csr_row_batch(Context&, const CsrView<V, I>&, DenseView<const V>,    \
                                    DenseView<const V>, bool, float*, int, int);           \
  template void sddmm_coo_edge_group(Context&, const CooView<V, I>&, DenseView<const V>,   \
                                     DenseView<const V>, bool, float*, int, int, int64_t); \
  template void scale_by_values(Context&, const CsrView<V, I>&, float*);
TSR_FOR_EACH_COMPUTE_TYPE(TSR_INSTANTIATE_SDDMM_CUDA)

}  // namespace tessera::ops::cuda
