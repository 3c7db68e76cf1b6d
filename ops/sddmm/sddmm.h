// SDDMM: out[e] = <X[row(e)], Y[col(e)]> for every stored entry e of A (optionally times A's
// value). X is [rows, F], Y is [cols, F], both value type V; results are f32.
// The output has A's structure: same format, same index arrays, f32 values.
#pragma once

#include <optional>

#include "core/context.h"
#include "core/dense.h"
#include "formats/sparse.h"
#include "schedule/schedule.h"

namespace tessera::ops {

struct SddmmOptions {
  bool scale_by_a = false;  // out[e] *= A.values[e]
  bool validate = true;     // as SpmmOptions::validate
  /// Device kernel variant and knobs, as SpmmOptions::schedule (for SDDMM the Problem's ld_b and
  /// ld_c are the leading dimensions of X and Y).
  std::optional<schedule::Schedule> schedule;
  bool deterministic = false;  // as SpmmOptions::deterministic
};

/// @brief out = (X Y^T) sampled on A's pattern, with A's format and structure. On the host any
/// format; on the device CSR and COO (the output in device memory).
/// Padding slots (ELL padding, BSR slots past the shape) hold 0; BSR computes every in-range
/// slot of a stored block (the block pattern).
/// @throw tessera::Error on shape or memory-space mismatch or malformed A.
template <class V, class I>
AnySparse<float, I> sddmm(Context& ctx, const AnySparse<V, I>& a, DenseView<const non_deduced_t<V>> x,
                          DenseView<const non_deduced_t<V>> y, const SddmmOptions& options = {});

/// CSR view entry point: out is [nnz] in a's memory space.
template <class V, class I>
void sddmm(Context& ctx, const CsrView<V, I>& a, DenseView<const non_deduced_t<V>> x, DenseView<const non_deduced_t<V>> y,
           float* out, const SddmmOptions& options = {});

inline double sddmm_flops(int64_t nnz, int64_t f) { return 2.0 * double(nnz) * double(f); }

}  // namespace tessera::ops
