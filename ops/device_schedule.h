// The schedule a device op runs: the caller's, or the default heuristic's, which reads cheap
// statistics of A (the longest row, measured once per matrix and kept as a hint in the Context).
#pragma once

#include <algorithm>
#include <optional>

#include "core/context.h"
#include "core/dense.h"
#include "formats/sparse.h"
#include "schedule/schedule.h"

namespace tessera::ops::detail {

/// @param ld_b, ld_c leading dimensions of the dense operands (B and C for SpMM, X and Y for SDDMM)
/// @param deterministic admit only variants that give the same bits on every run
/// @param operand_align Problem::operand_align (the dense operands' base alignment in elements)
/// @throw tessera::Error naming the op, the schedule and the reason when it cannot run the problem
template <class V, class I>
schedule::Schedule choose_schedule(Context& ctx, schedule::Op op, const CsrView<V, I>& a,
                                   int64_t features, int64_t ld_b, int64_t ld_c,
                                   const std::optional<schedule::Schedule>& requested,
                                   bool deterministic = false, int64_t operand_align = 8);

/// Problem::operand_align of two dense operands (B and C, or X and Y): the widest vector both
/// base pointers are aligned to.
template <class T, class U>
int64_t operand_align(DenseView<T> first, DenseView<U> second) {
  return std::min(schedule::vector_alignment(first.data, sizeof(T)),
                  schedule::vector_alignment(second.data, sizeof(U)));
}

/// The same for a problem already described (formats other than CSR: no statistics measured).
schedule::Schedule choose_schedule(const schedule::Problem& problem,
                                   const std::optional<schedule::Schedule>& requested);

}  // namespace tessera::ops::detail
