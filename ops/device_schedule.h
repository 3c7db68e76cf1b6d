// The schedule a device op runs: the caller's, or the default heuristic's, which reads cheap
// statistics of A (the longest row, measured once per matrix and kept as a hint in the Context).
#pragma once

#include <optional>

#include "core/context.h"
#include "formats/sparse.h"
#include "schedule/schedule.h"

namespace tessera::ops::detail {

/// @param ld_b, ld_c leading dimensions of the dense operands (B and C for SpMM, X and Y for SDDMM)
/// @param deterministic admit only variants that give the same bits on every run
/// @throw tessera::Error naming the op, the schedule and the reason when it cannot run the problem
template <class V, class I>
schedule::Schedule choose_schedule(Context& ctx, schedule::Op op, const CsrView<V, I>& a,
                                   int64_t features, int64_t ld_b, int64_t ld_c,
                                   const std::optional<schedule::Schedule>& requested,
                                   bool deterministic = false);

/// The same for a problem already described (formats other than CSR: no statistics measured).
schedule::Schedule choose_schedule(const schedule::Problem& problem,
                                   const std::optional<schedule::Schedule>& requested);

}  // namespace tessera::ops::detail
