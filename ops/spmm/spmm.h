// SpMM: C = alpha * A * B + beta * C for a sparse A in any format and dense row-major B and C.
// A and B hold value type V (f32, bf16 or f16); C is f32 and every product accumulates in f32.
// One dispatch point: validate, then pick the backend from the operands' memory space.
// Device work is queued on ctx.stream() and returns before it finishes: call ctx.synchronize()
// before reading C from the host (ctx's stream does not synchronise with the legacy default one).
#pragma once

#include <optional>

#include "core/context.h"
#include "core/dense.h"
#include "formats/sparse.h"
#include "schedule/schedule.h"

namespace tessera::ops {

/// How the products of a row meet: C[r, f] = alpha * reduce_e(A[r, e] * B[col(e), f]) + beta *
/// C[r, f]. sum is SpMM; max, min and mean are the GNN aggregations (as PyG and DGL define them):
/// an empty row reduces to 0, mean divides by the row's stored entries, and a NaN product wins a
/// max or min (it propagates, as torch.max does). Products are f32; sum and mean accumulate in
/// f32.
enum class SpmmReduce { sum, max, min, mean };
const char* spmm_reduce_name(SpmmReduce r);

struct SpmmOptions {
  float alpha = 1.0f;
  float beta = 0.0f;  // beta == 0 never reads C (C may hold garbage or NaN)
  /// Run the O(nnz) structural validation of A (offsets, index ranges). Shapes and memory
  /// spaces are always checked; turn this off only for a matrix validated once already.
  bool validate = true;
  /// Device kernel variant and knobs (schedule/schedule.h); empty: schedule::default_schedule.
  /// A schedule that cannot implement the problem throws with the reason. The CPU path has one
  /// variant per format and ignores this.
  std::optional<schedule::Schedule> schedule;
  /// Require the same bits on every run. Tessera's kernels give them (no floating-point atomics,
  /// a fixed reduction order) except hyb.fused with atomic=1; this rejects that schedule and the
  /// cuSPARSE variants (csr.cusparse, bsr.cusparse, bsr.cusparse_blocked_ell) with a clear error.
  bool deterministic = false;
  /// Anything but sum takes CSR only in this version, on the host or the GPU (there max / min
  /// run a kernel of their own, mean the default sum schedule and a scaling pass: a schedule is
  /// refused); the other formats take sum and say so.
  SpmmReduce reduce = SpmmReduce::sum;
  /// max / min only, optional: where each output came from, [rows, F] row-major with leading
  /// dimension F: the column of A (B's row) whose product won, the first in the row's order
  /// on ties, -1 for an empty row. In A's memory space.
  int64_t* arg = nullptr;
};

/// @brief C = alpha * A * B + beta * C.
/// @param a sparse matrix, rows x cols, on the host (any format) or on the device (CSR, BSR, ELL,
///          Hybrid; BSR on tensor cores, so f32 BSR products carry tf32 rounding)
/// @param b dense [cols, F] in the same memory space as a
/// @param c dense [rows, F], f32, in the same memory space
/// @throw tessera::Error on shape or memory-space mismatch, malformed A, or a device request in
///        a CPU-only build.
template <class V, class I>
void spmm(Context& ctx, const AnySparse<V, I>& a, DenseView<const non_deduced_t<V>> b, DenseView<float> c,
          const SpmmOptions& options = {});

/// CSR view entry point (no owning container needed; host or device memory).
template <class V, class I>
void spmm(Context& ctx, const CsrView<V, I>& a, DenseView<const non_deduced_t<V>> b, DenseView<float> c,
          const SpmmOptions& options = {});

/// FLOPs of one SpMM: 2 * nnz * F.
inline double spmm_flops(int64_t nnz, int64_t f) { return 2.0 * double(nnz) * double(f); }

}  // namespace tessera::ops
