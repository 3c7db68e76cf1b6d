#include "ops/spmm/spmm.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include <omp.h>

#include "formats/validate.h"
#include "ops/check.h"
#include "ops/cpu/kernels.h"
#include "ops/device_schedule.h"
#if TESSERA_WITH_CUDA
#include "core/device.h"
#include "ops/cuda_kernels.h"
#endif

namespace tessera::ops {

namespace {

constexpr const char* kOp = "spmm";

template <class V>
void check_operands(int64_t rows, int64_t cols, MemorySpace space, DenseView<const V> b,
                    DenseView<float> c) {
  validate_dense(b, "spmm: B");
  validate_dense(c, "spmm: C");
  TSR_CHECK(b.rows == cols, "spmm: B has ", b.rows, " rows but A has ", cols, " columns");
  TSR_CHECK(c.rows == rows, "spmm: C has ", c.rows, " rows but A has ", rows, " rows");
  TSR_CHECK(b.cols == c.cols, "spmm: B has ", b.cols, " columns but C has ", c.cols);
  detail::check_space(space, b.space, kOp, "B");
  detail::check_space(space, c.space, kOp, "C");
  detail::check_device_build(space, kOp);
}

// True when every target row of part `part` occurs in one run of consecutive local rows, so row
// groups can run in parallel without two threads writing one output row. last_part[row] holds the
// last part that claimed the row, so one array serves every part without being cleared.
template <class I>
bool row_groups_disjoint(const Buffer<I>& row_map, int part, std::vector<int>& last_part) {
  for (size_t r = 0; r < row_map.size(); ++r) {
    if (r > 0 && row_map[r] == row_map[r - 1]) continue;
    if (last_part[row_map[r]] == part) return false;
    last_part[row_map[r]] = part;
  }
  return true;
}

}  // namespace

const char* spmm_reduce_name(SpmmReduce r) {
  switch (r) {
    case SpmmReduce::sum: return "sum";
    case SpmmReduce::max: return "max";
    case SpmmReduce::min: return "min";
    case SpmmReduce::mean: return "mean";
  }
  return "?";
}

namespace {

// reduce != sum or an arg output on host CSR (the GPU has ops/spmm/spmm_csr_reduce_cuda.cu).
// Each thread owns whole rows; a row's products meet in row order, so results do not depend on
// the thread count. The reduction and the arg output are template parameters so that the
// feature loops carry no run-time branches and vectorise (the winner's column is kept in I, the
// index type, so that its select is as wide as the float compare for int32 indices).
template <SpmmReduce kOp, bool kArg, class V, class I>
void spmm_csr_reduce_rows(const CsrView<V, I>& a, DenseView<const V> b, DenseView<float> c,
                          const SpmmOptions& o, int threads) {
  static_assert(kOp != SpmmReduce::sum && (!kArg || kOp != SpmmReduce::mean));
  const int64_t F = c.cols;
  constexpr bool kExtreme = kOp == SpmmReduce::max || kOp == SpmmReduce::min;
#pragma omp parallel num_threads(threads > 0 ? threads : omp_get_max_threads())
  {
    std::vector<float> acc_buffer(static_cast<size_t>(F));
    std::vector<I> who_buffer(kArg ? static_cast<size_t>(F) : 0);
    float* const acc = acc_buffer.data();
    I* const who = who_buffer.data();
#pragma omp for schedule(dynamic, 64)
    for (int64_t r = 0; r < a.rows; ++r) {
      const int64_t begin = a.indptr[r], end = a.indptr[r + 1];
      std::fill(acc, acc + F, 0.0f);
      if constexpr (kArg) std::fill(who, who + F, I(-1));
      for (int64_t e = begin; e < end; ++e) {
        const I j = a.indices[e];
        const float v = to_float(a.values[e]);
        const V* brow = b.data + int64_t(j) * b.ld;
        if constexpr (!kExtreme) {
          for (int64_t f = 0; f < F; ++f) acc[f] += v * to_float(brow[f]);
        } else if (e == begin) {  // the first product of a max / min, as it is (a -0 stays -0)
          for (int64_t f = 0; f < F; ++f) acc[f] = v * to_float(brow[f]);
          if constexpr (kArg) std::fill(who, who + F, j);
        } else {
          // A later product replaces the best when strictly better (ties keep the earlier
          // entry) or when it is a NaN and the best is not. Branch-free selects.
          for (int64_t f = 0; f < F; ++f) {
            const float p = v * to_float(brow[f]), best = acc[f];
            const bool better = kOp == SpmmReduce::max ? p > best : p < best;
            const bool wins = better | ((p != p) & (best == best));
            acc[f] = wins ? p : best;
            if constexpr (kArg) who[f] = wins ? j : who[f];
          }
        }
      }
      const float scale = kOp == SpmmReduce::mean && end > begin ? 1.0f / float(end - begin) : 1.0f;
      float* crow = c.data + r * c.ld;
      for (int64_t f = 0; f < F; ++f) {
        const float value = o.alpha * (acc[f] * scale);
        crow[f] = o.beta == 0.0f ? value : value + o.beta * crow[f];
      }
      if constexpr (kArg) {
        for (int64_t f = 0; f < F; ++f) o.arg[r * F + f] = int64_t(who[f]);
      }
    }
  }
}

template <class V, class I>
void spmm_csr_reduce(const CsrView<V, I>& a, DenseView<const V> b, DenseView<float> c,
                     const SpmmOptions& o, int threads) {
  const bool arg = o.arg != nullptr;
  switch (o.reduce) {
    case SpmmReduce::max:
      return arg ? spmm_csr_reduce_rows<SpmmReduce::max, true>(a, b, c, o, threads)
                 : spmm_csr_reduce_rows<SpmmReduce::max, false>(a, b, c, o, threads);
    case SpmmReduce::min:
      return arg ? spmm_csr_reduce_rows<SpmmReduce::min, true>(a, b, c, o, threads)
                 : spmm_csr_reduce_rows<SpmmReduce::min, false>(a, b, c, o, threads);
    case SpmmReduce::mean: return spmm_csr_reduce_rows<SpmmReduce::mean, false>(a, b, c, o, threads);
    case SpmmReduce::sum: break;
  }
  TSR_FAIL("spmm_csr_reduce: sum runs in the SpMM kernels");
}

}  // namespace

template <class V, class I>
void spmm(Context& ctx, const CsrView<V, I>& a, DenseView<const non_deduced_t<V>> b, DenseView<float> c,
          const SpmmOptions& o) {
  check_operands(a.rows, a.cols, a.space, b, c);
  TSR_CHECK(o.arg == nullptr || o.reduce == SpmmReduce::max || o.reduce == SpmmReduce::min,
            "spmm: an arg output goes with reduce=max or min, not ", spmm_reduce_name(o.reduce));
  if (o.reduce != SpmmReduce::sum) {
    if (a.space == MemorySpace::host) {
#if TESSERA_WITH_CUDA
      TSR_CHECK(o.arg == nullptr || !device::available() || !cuda::device_only_memory(o.arg),
                "spmm: the arg output must be in host memory when A is");
#endif
      if (o.validate) validate(a);
      return spmm_csr_reduce(a, b, c, o, ctx.cpu_threads());
    }
    TSR_CHECK(!o.schedule, "spmm: reduce=", spmm_reduce_name(o.reduce),
              " on the GPU runs kernels of its own; schedules choose among the sum kernels");
    check_index_capacity<I>(a.rows, a.cols, a.nnz, "spmm: A");
#if TESSERA_WITH_CUDA
    if (o.validate) cuda::validate_csr(ctx, a);
    if (o.reduce != SpmmReduce::mean) return cuda::spmm_csr_reduce(ctx, a, b, c, o.alpha, o.beta, o.reduce, o.arg);
    // mean: the row sums by the default deterministic sum schedule (into C itself where beta == 0,
    // else into a scratch matrix), then one pass dividing by the rows' entries. On the H200 at
    // F = 32 this took 0.67-0.92x the time of a merge-path kernel of its own (products-like 3.50
    // -> 2.33 ms; bench/RESULTS.md, session 28).
    SpmmOptions sum;
    sum.validate = false;  // validated above
    sum.deterministic = true;
    if (o.beta == 0.0f) {
      spmm(ctx, a, b, c, sum);
      return cuda::spmm_mean_finish(ctx, a.indptr, a.rows,
                                    DenseView<const float>{c.rows, c.cols, c.ld, c.data, c.space}, c, o.alpha, 0.0f);
    }
    DenseMatrix<float> sums(c.rows, c.cols, MemorySpace::device);
    spmm(ctx, a, b, sums.view(), sum);
    return cuda::spmm_mean_finish(ctx, a.indptr, a.rows, std::as_const(sums).view(), c, o.alpha, o.beta);
#else
    TSR_FAIL("spmm: device operands need a build of Tessera with CUDA");
#endif
  }
  const cpu::SpmmScalars s{o.alpha, o.beta, ctx.cpu_threads()};
  if (a.space == MemorySpace::device) {
    check_index_capacity<I>(a.rows, a.cols, a.nnz, "spmm: A");
    const schedule::Schedule chosen =
        detail::choose_schedule(ctx, schedule::Op::spmm, a, c.cols, b.ld, c.ld, o.schedule,
                                o.deterministic, detail::operand_align(b, c));
#if TESSERA_WITH_CUDA
    if (o.validate) cuda::validate_csr(ctx, a);
    if (chosen.variant == "csr.cusparse") {
      cuda::spmm_csr_cusparse(ctx, a, b, c, o.alpha, o.beta, int(chosen.knob("alg")));
    } else if (chosen.variant == "csr.merge_path") {
      cuda::spmm_csr_merge_path(ctx, a, b, c, o.alpha, o.beta, int(chosen.knob("tpr")),
                                int(chosen.knob("vec")), chosen.knob("ipt"));
    } else if (chosen.variant == "csr.nnz_split") {
      cuda::spmm_csr_nnz_split(ctx, a, b, c, o.alpha, o.beta, int(chosen.knob("g")), chosen.knob("ept"),
                               chosen.knob("queue") != 0);
    } else {
      cuda::spmm_csr_row_split(ctx, a, b, c, o.alpha, o.beta, int(chosen.knob("tpr")),
                               int(chosen.knob("rpb")), int(chosen.knob("vec")));
    }
#endif
    return;
  }
  if (o.validate) validate(a);
  TSR_CPU_DISPATCH(spmm_csr_row_split, a, b, c, s);
}

namespace {

// Device SpMM on BSR, ELL and Hybrid (CSR has its own entry point).
template <class V, class I>
void spmm_device(Context& ctx, const AnySparse<V, I>& a, DenseView<const V> b, DenseView<float> c,
                 const SpmmOptions& o) {
  const auto choose = [&](schedule::Problem p) {
    p.space = MemorySpace::device;  // an empty Hybrid (no parts) reports the host
    p.deterministic = o.deterministic;
    p.operand_align = detail::operand_align(b, c);
    return detail::choose_schedule(p, o.schedule);
  };
  const schedule::Op op = schedule::Op::spmm;
#if TESSERA_WITH_CUDA
  switch (format_of(a)) {
    case Format::bsr: {
      const BsrView<V, I> m = std::get<Bsr<V, I>>(a).view();
      TSR_CHECK(m.block_rows >= 1 && m.block_cols >= 1, "Bsr: block shape ", m.block_rows, "x",
                m.block_cols, " must be at least 1x1");
      check_index_capacity<I>(m.rows, m.cols, m.num_blocks, "spmm: A");
      const schedule::Schedule s = choose(schedule::describe(op, m, c.cols, b.ld, c.ld));
      if (o.validate) cuda::validate_bsr(ctx, m);
      if (s.variant == "bsr.cusparse" || s.variant == "bsr.cusparse_blocked_ell") {
        return cuda::spmm_bsr_cusparse(ctx, m, b, c, o.alpha, o.beta, s.variant == "bsr.cusparse_blocked_ell");
      }
      return cuda::spmm_bsr_tensor_core(ctx, m, b, c, o.alpha, o.beta, int(s.knob("ft")),
                                        int(s.knob("wpr")));
    }
    case Format::ell: {
      const EllView<V, I> m = std::get<Ell<V, I>>(a).view();
      check_index_capacity<I>(m.rows, m.cols, m.rows * m.width, "spmm: A");
      const schedule::Schedule s = choose(schedule::describe(op, m, c.cols, b.ld, c.ld));
      if (o.validate) cuda::validate_ell(ctx, m);
      return cuda::spmm_ell_row_split(ctx, m, b, c, o.alpha, o.beta, int(s.knob("tpr")),
                                      int(s.knob("rpb")), int(s.knob("vec")));
    }
    case Format::hybrid: {
      const Hybrid<V, I>& m = std::get<Hybrid<V, I>>(a);
      check_index_capacity<I>(m.rows, m.cols, 0, "spmm: A");
      const schedule::Schedule s = choose(schedule::describe(op, m, c.cols, b.ld, c.ld));
      if (o.validate) cuda::validate_hybrid(ctx, m);
      return cuda::spmm_hybrid_fused(ctx, m, b, c, o.alpha, o.beta, int(s.knob("tpr")),
                                     int(s.knob("rpb")), int(s.knob("vec")), s.knob("atomic") == 1);
    }
    default:
      TSR_FAIL("spmm: the ", format_name(format_of(a)),
               " format runs on the host only (device SpMM takes CSR, BSR, ELL and Hybrid)");
  }
#else
  (void)ctx, (void)a, (void)b, (void)c, (void)choose, (void)op;
  TSR_FAIL("spmm: device operands given, but this build of Tessera has no CUDA support");
#endif
}

}  // namespace

template <class V, class I>
void spmm(Context& ctx, const AnySparse<V, I>& a, DenseView<const non_deduced_t<V>> b, DenseView<float> c,
          const SpmmOptions& o) {
  if (const auto* csr = std::get_if<Csr<V, I>>(&a)) return spmm(ctx, csr->view(), b, c, o);
  const auto* hybrid = std::get_if<Hybrid<V, I>>(&a);
  // A Hybrid without parts (an all-zero matrix) lives wherever C does.
  const MemorySpace space = hybrid && hybrid->parts.empty()
                                ? c.space
                                : std::visit([](const auto& m) { return m.space(); }, a);
  const auto [rows, cols] = std::visit([](const auto& m) { return std::pair(m.rows, m.cols); }, a);
  check_operands(rows, cols, space, b, c);
  TSR_CHECK(o.reduce == SpmmReduce::sum, "spmm: reduce=", spmm_reduce_name(o.reduce),
            " takes CSR in this version, not ", format_name(format_of(a)));
  TSR_CHECK(o.arg == nullptr, "spmm: an arg output goes with reduce=max or min on CSR");
  if (space == MemorySpace::device) return spmm_device(ctx, a, b, c, o);
  if (o.validate) validate(a);
  const cpu::SpmmScalars s{o.alpha, o.beta, ctx.cpu_threads()};
  switch (format_of(a)) {
    case Format::coo:
      TSR_CPU_DISPATCH(spmm_coo_feature_split, std::get<Coo<V, I>>(a).view(), b, c, s);
      break;
    case Format::csc:
      TSR_CPU_DISPATCH(spmm_csc_feature_split, std::get<Csc<V, I>>(a).view(), b, c, s);
      break;
    case Format::bsr:
      TSR_CPU_DISPATCH(spmm_bsr_block_row, std::get<Bsr<V, I>>(a).view(), b, c, s);
      break;
    case Format::ell:
      TSR_CPU_DISPATCH(spmm_ell_row_split, std::get<Ell<V, I>>(a).view(), (const I*)nullptr, b, c,
                       s, false);
      break;
    case Format::ragged:
      TSR_CPU_DISPATCH(spmm_ragged_row_split, std::get<RaggedMatrix<V, I>>(a), b, c, s);
      break;
    case Format::hybrid: {
      // C = beta * C, then every part adds alpha * P^T M B into its mapped rows.
      TSR_CPU_DISPATCH(scale_rows, c, o.beta, s.threads);
      const auto& parts = std::get<Hybrid<V, I>>(a).parts;
      std::vector<int> last_part(size_t(rows), -1);
      for (size_t p = 0; p < parts.size(); ++p) {
        const auto& part = parts[p];
        cpu::SpmmScalars ps = s;
        if (!row_groups_disjoint(part.row_map, int(p), last_part)) ps.threads = 1;
        if (const auto* ell = std::get_if<Ell<V, I>>(&part.matrix)) {
          TSR_CPU_DISPATCH(spmm_ell_row_split, ell->view(), part.row_map.data(), b, c, ps, true);
        } else {
          TSR_CPU_DISPATCH(spmm_csr_mapped_accumulate, std::get<Csr<V, I>>(part.matrix).view(),
                           part.row_map.data(), b, c, ps);
        }
      }
      break;
    }
    case Format::csr:
      break;  // handled above
  }
}

#define TSR_INSTANTIATE_SPMM(V, I)                                                             \
  template void spmm(Context&, const CsrView<V, I>&, DenseView<const V>, DenseView<float>,     \
                     const SpmmOptions&);                                                      \
  template void spmm(Context&, const AnySparse<V, I>&, DenseView<const V>, DenseView<float>,   \
                     const SpmmOptions&);
TSR_FOR_EACH_COMPUTE_TYPE(TSR_INSTANTIATE_SPMM)

}  // namespace tessera::ops
