#include "ops/sddmm/sddmm.h"

#include "formats/validate.h"
#include "ops/check.h"
#include "ops/cpu/kernels.h"
#include "ops/device_schedule.h"
#if TESSERA_WITH_CUDA
#include "ops/cuda_kernels.h"
#endif

namespace tessera::ops {

namespace {

constexpr const char* kOp = "sddmm";

template <class V>
void check_operands(int64_t rows, int64_t cols, MemorySpace space, DenseView<const V> x,
                    DenseView<const V> y) {
  validate_dense(x, "sddmm: X");
  validate_dense(y, "sddmm: Y");
  TSR_CHECK(x.rows == rows, "sddmm: X has ", x.rows, " rows but A has ", rows, " rows");
  TSR_CHECK(y.rows == cols, "sddmm: Y has ", y.rows, " rows but A has ", cols, " columns");
  TSR_CHECK(x.cols == y.cols, "sddmm: X has ", x.cols, " columns but Y has ", y.cols);
  detail::check_space(space, x.space, kOp, "X");
  detail::check_space(space, y.space, kOp, "Y");
  detail::check_device_build(space, kOp);
}

// The same structure with f32 values (index arrays copied, values allocated, not yet written).
template <class V, class I>
Csr<float, I> like(const Csr<V, I>& m) {
  return {m.rows, m.cols, m.indptr, m.indices, Buffer<float>(m.values.size(), m.space())};
}
template <class V, class I>
Coo<float, I> like(const Coo<V, I>& m) {
  return {m.rows, m.cols, m.row, m.col, Buffer<float>(m.values.size(), m.space())};
}
template <class V, class I>
Csc<float, I> like(const Csc<V, I>& m) {
  return {m.rows, m.cols, m.indptr, m.indices, Buffer<float>(m.values.size())};
}
template <class V, class I>
Bsr<float, I> like(const Bsr<V, I>& m) {
  return {m.rows, m.cols, m.block_rows, m.block_cols, m.indptr, m.indices,
          Buffer<float>(m.values.size())};
}
template <class V, class I>
Ell<float, I> like(const Ell<V, I>& m) {
  return {m.rows, m.cols, m.width, m.indices, Buffer<float>(m.values.size())};
}

}  // namespace

template <class V, class I>
void sddmm(Context& ctx, const CsrView<V, I>& a, DenseView<const non_deduced_t<V>> x, DenseView<const non_deduced_t<V>> y,
           float* out, const SddmmOptions& o) {
  check_operands(a.rows, a.cols, a.space, x, y);
  TSR_CHECK(out != nullptr || a.nnz == 0, "sddmm: null output for ", a.nnz, " entries");
  if (a.space == MemorySpace::device) {
    check_index_capacity<I>(a.rows, a.cols, a.nnz, "sddmm: A");
    const schedule::Schedule chosen =
        detail::choose_schedule(ctx, schedule::Op::sddmm, a, x.cols, x.ld, y.ld, o.schedule,
                                o.deterministic, detail::operand_align(x, y));
#if TESSERA_WITH_CUDA
    if (o.validate) cuda::validate_csr(ctx, a);
    if (chosen.variant == "csr.edge_group") {
      cuda::sddmm_csr_edge_group(ctx, a, x, y, o.scale_by_a, out, int(chosen.knob("tpe")),
                                 int(chosen.knob("vec")), chosen.knob("ept"));
    } else if (chosen.variant == "csr.edge_batch") {
      cuda::sddmm_csr_edge_batch(ctx, a, x, y, o.scale_by_a, out, int(chosen.knob("tpe")),
                                 int(chosen.knob("vec")), chosen.knob("ept"));
    } else if (chosen.variant == "csr.row_batch") {
      cuda::sddmm_csr_row_batch(ctx, a, x, y, o.scale_by_a, out, int(chosen.knob("tpe")),
                                int(chosen.knob("vec")));
    } else if (chosen.variant == "csr.cusparse") {
      cuda::sddmm_csr_cusparse(ctx, a, x, y, o.scale_by_a, out);
    } else {
      cuda::sddmm_csr_row_split(ctx, a, x, y, o.scale_by_a, out, int(chosen.knob("tpr")),
                                int(chosen.knob("vec")));
    }
#endif
    return;
  }
  if (o.validate) validate(a);
  TSR_CPU_DISPATCH(sddmm_csr_row_split, a, (const I*)nullptr, x, y, o.scale_by_a, out,
                   ctx.cpu_threads());
}

template <class V, class I>
AnySparse<float, I> sddmm(Context& ctx, const AnySparse<V, I>& a, DenseView<const non_deduced_t<V>> x,
                          DenseView<const non_deduced_t<V>> y, const SddmmOptions& o) {
  const MemorySpace space = std::visit([](const auto& m) { return m.space(); }, a);
  const auto [rows, cols] = std::visit([](const auto& m) { return std::pair(m.rows, m.cols); }, a);
  check_operands(rows, cols, space, x, y);
  if (const auto* csr = std::get_if<Csr<V, I>>(&a)) {
    Csr<float, I> out = like(*csr);
    sddmm(ctx, csr->view(), x, y, out.values.data(), o);
    return out;
  }
  if (space == MemorySpace::device) {
    const auto* coo = std::get_if<Coo<V, I>>(&a);
    TSR_CHECK(coo != nullptr, "sddmm: the ", format_name(format_of(a)),
              " format runs on the host only (device SDDMM takes CSR and COO)");
    const CooView<V, I> m = coo->view();
    check_index_capacity<I>(m.rows, m.cols, m.nnz, "sddmm: A");
    schedule::Problem p = schedule::describe(schedule::Op::sddmm, m, x.cols, x.ld, y.ld);
    p.deterministic = o.deterministic;
    p.operand_align = detail::operand_align(x, y);
    const schedule::Schedule chosen = detail::choose_schedule(p, o.schedule);
    Coo<float, I> out = like(*coo);
#if TESSERA_WITH_CUDA
    if (o.validate) cuda::validate_coo(ctx, m);
    cuda::sddmm_coo_edge_group(ctx, m, x, y, o.scale_by_a, out.values.data(), int(chosen.knob("tpe")),
                               int(chosen.knob("vec")), chosen.knob("ept"));
#endif
    return out;
  }
  if (o.validate) validate(a);
  const int threads = ctx.cpu_threads();
  const bool scale = o.scale_by_a;
  switch (format_of(a)) {
    case Format::coo: {
      const auto& m = std::get<Coo<V, I>>(a);
      Coo<float, I> out = like(m);
      TSR_CPU_DISPATCH(sddmm_coo_edge_split, m.view(), x, y, scale, out.values.data(), threads);
      return out;
    }
    case Format::csc: {
      const auto& m = std::get<Csc<V, I>>(a);
      Csc<float, I> out = like(m);
      TSR_CPU_DISPATCH(sddmm_csc_col_split, m.view(), x, y, scale, out.values.data(), threads);
      return out;
    }
    case Format::bsr: {
      const auto& m = std::get<Bsr<V, I>>(a);
      Bsr<float, I> out = like(m);
      TSR_CPU_DISPATCH(sddmm_bsr_block, m.view(), x, y, scale, out.values.data(), threads);
      return out;
    }
    case Format::ell: {
      const auto& m = std::get<Ell<V, I>>(a);
      Ell<float, I> out = like(m);
      TSR_CPU_DISPATCH(sddmm_ell_row_split, m.view(), (const I*)nullptr, x, y, scale,
                       out.values.data(), threads);
      return out;
    }
    case Format::ragged: {
      const auto& m = std::get<RaggedMatrix<V, I>>(a);
      std::vector<float> values(size_t(m.nnz()));
      TSR_CPU_DISPATCH(sddmm_ragged_row_split, m, x, y, scale, values.data(), threads);
      RaggedMatrix<float, I> out{m.rows, m.cols, {}};
      out.data.levels.push_back(m.data.levels[0]);
      out.data.values = Buffer<SparseEntry<float, I>>(values.size());
      for (size_t e = 0; e < values.size(); ++e) out.data.values[e] = {m.data.values[e].col, values[e]};
      return out;
    }
    case Format::hybrid: {
      const auto& m = std::get<Hybrid<V, I>>(a);
      Hybrid<float, I> out{m.rows, m.cols, {}};
      for (const auto& part : m.parts) {
        HybridPart<float, I> op;
        op.col_begin = part.col_begin;
        op.col_end = part.col_end;
        op.row_map = part.row_map;
        if (const auto* ell = std::get_if<Ell<V, I>>(&part.matrix)) {
          Ell<float, I> oe = like(*ell);
          TSR_CPU_DISPATCH(sddmm_ell_row_split, ell->view(), part.row_map.data(), x, y, scale,
                           oe.values.data(), threads);
          op.matrix = std::move(oe);
        } else {
          const auto& pc = std::get<Csr<V, I>>(part.matrix);
          Csr<float, I> oc = like(pc);
          TSR_CPU_DISPATCH(sddmm_csr_row_split, pc.view(), part.row_map.data(), x, y, scale,
                           oc.values.data(), threads);
          op.matrix = std::move(oc);
        }
        out.parts.push_back(std::move(op));
      }
      return out;
    }
    case Format::csr:
      break;
  }
  TSR_FAIL("sddmm: unknown format");
}

#define TSR_INSTANTIATE_SDDMM(V, I)                                                              \
  template void sddmm(Context&, const CsrView<V, I>&, DenseView<const V>, DenseView<const V>,    \
                      float*, const SddmmOptions&);                                              \
  template AnySparse<float, I> sddmm(Context&, const AnySparse<V, I>&, DenseView<const V>,       \
                                     DenseView<const V>, const SddmmOptions&);
TSR_FOR_EACH_COMPUTE_TYPE(TSR_INSTANTIATE_SDDMM)

}  // namespace tessera::ops
