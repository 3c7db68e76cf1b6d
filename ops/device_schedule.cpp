#include "ops/device_schedule.h"

#include "core/config.h"
#include "core/error.h"
#if TESSERA_WITH_CUDA
#include "ops/cuda_kernels.h"
#endif

namespace tessera::ops::detail {

template <class V, class I>
schedule::Schedule choose_schedule(Context& ctx, schedule::Op op, const CsrView<V, I>& a,
                                   int64_t features, int64_t ld_b, int64_t ld_c,
                                   const std::optional<schedule::Schedule>& requested,
                                   bool deterministic, int64_t operand_align) {
  schedule::Problem problem = schedule::describe(op, a, features, ld_b, ld_c);
  problem.deterministic = deterministic;
  problem.operand_align = operand_align;
  if (!requested) {
#if TESSERA_WITH_CUDA
    // Reads indptr[0..rows] only, so it is memory-safe before validation; a malformed A gives a
    // meaningless hint and then fails validation.
    if (a.space == MemorySpace::device) problem.max_row_length = cuda::max_row_length_hinted(ctx, a);
#endif
  }
  return choose_schedule(problem, requested);
}

schedule::Schedule choose_schedule(const schedule::Problem& problem,
                                   const std::optional<schedule::Schedule>& requested) {
  const schedule::Schedule chosen = requested ? *requested : schedule::default_schedule(problem);
  const schedule::Verdict verdict = schedule::can_implement(chosen, problem);
  TSR_CHECK(verdict.ok, schedule::op_name(problem.op), ": schedule ", chosen.to_string(),
            " cannot run this problem: ", verdict.reason);
  return chosen;
}

#define TSR_INSTANTIATE_CHOOSE_SCHEDULE(V, I)                                                        \
  template schedule::Schedule choose_schedule(Context&, schedule::Op, const CsrView<V, I>&, int64_t, \
                                              int64_t, int64_t, const std::optional<schedule::Schedule>&, \
                                              bool, int64_t);
TSR_FOR_EACH_COMPUTE_TYPE(TSR_INSTANTIATE_CHOOSE_SCHEDULE)

}  // namespace tessera::ops::detail
