// cuSPARSE plans (ops/cusparse_plan.h) and the csr.cusparse variants of ops::spmm/sddmm built on
// them. Host code; the CUDA-less build has only the error paths.
#include "ops/cusparse_plan.h"

#include <algorithm>
#include <functional>
#include <vector>

#include "core/config.h"
#include "core/error.h"

#if TESSERA_WITH_CUDA
#include <cusparse.h>

#include "core/buffer.h"
#include "core/cuda_check.h"
#include "formats/validate.h"
#include "ops/cuda_kernels.h"
#endif

namespace tessera::ops {

#if TESSERA_WITH_CUDA

namespace {

template <class I>
cusparseIndexType_t index_type() {
  return sizeof(I) == 4 ? CUSPARSE_INDEX_32I : CUSPARSE_INDEX_64I;
}

cusparseSpMMAlg_t spmm_alg(int alg) {
  switch (alg) {
    case 1: return CUSPARSE_SPMM_CSR_ALG1;
    case 2: return CUSPARSE_SPMM_CSR_ALG2;
    case 3: return CUSPARSE_SPMM_CSR_ALG3;
    default: TSR_FAIL("csr.cusparse: alg = ", alg, " must be 1, 2 or 3");
  }
}

template <class I>
cusparseSpMatDescr_t make_csr(const CsrView<float, I>& a, float* values) {
  cusparseSpMatDescr_t d = nullptr;
  TSR_CUSPARSE_CHECK(cusparseCreateCsr(&d, a.rows, a.cols, a.nnz, const_cast<I*>(a.indptr),
                                       const_cast<I*>(a.indices), values, index_type<I>(),
                                       index_type<I>(), CUSPARSE_INDEX_BASE_ZERO, CUDA_R_32F));
  return d;
}

cusparseDnMatDescr_t make_dense(int64_t rows, int64_t cols, int64_t ld, const float* data,
                                cusparseOrder_t order) {
  cusparseDnMatDescr_t d = nullptr;
  TSR_CUSPARSE_CHECK(cusparseCreateDnMat(&d, rows, cols, ld, const_cast<float*>(data), CUDA_R_32F, order));
  return d;
}

}  // namespace

struct CusparsePlan::State {
  enum class Kind { spmm, sddmm, nothing } kind = Kind::nothing;
  cusparseHandle_t handle = nullptr;
  cusparseSpMatDescr_t sparse = nullptr;
  cusparseDnMatDescr_t dense1 = nullptr, dense2 = nullptr;
  float alpha = 1.0f, beta = 0.0f;
  cusparseSpMMAlg_t spmm_alg = CUSPARSE_SPMM_ALG_DEFAULT;
  cusparseOperation_t sddmm_op_b = CUSPARSE_OPERATION_NON_TRANSPOSE;
  Buffer<unsigned char> owned;  // the workspace when preprocessed (it must outlive the plan's runs)
  Buffer<int32_t> ell_columns;  // A in Blocked-ELL (spmm_blocked_ell)
  Buffer<float> ell_values;
  void* workspace = nullptr;
  std::function<void()> ours;  // what runs instead when cuSPARSE is not asked (empty operands)
  ~State() {
    if (sparse) cusparseDestroySpMat(sparse);
    if (dense1) cusparseDestroyDnMat(dense1);
    if (dense2) cusparseDestroyDnMat(dense2);
  }
  void* allocate(Context& ctx, size_t bytes, bool own) {
    if (!own) return ctx.workspace(bytes);
    owned = Buffer<unsigned char>(bytes, MemorySpace::device);
    return owned.data();
  }
};

namespace {

// The rest of an SpMM plan once s.sparse is made (any format): B and C as row-major dense
// descriptors, the workspace, and the preprocessing when asked.
void finish_spmm(Context& ctx, CusparsePlan::State& s, DenseView<const float> b, DenseView<float> c,
                 bool preprocess) {
  s.dense1 = make_dense(b.rows, b.cols, b.ld, b.data, CUSPARSE_ORDER_ROW);
  s.dense2 = make_dense(c.rows, c.cols, c.ld, c.data, CUSPARSE_ORDER_ROW);
  const cusparseOperation_t op = CUSPARSE_OPERATION_NON_TRANSPOSE;
  size_t bytes = 0;
  TSR_CUSPARSE_CHECK(cusparseSpMM_bufferSize(s.handle, op, op, &s.alpha, s.sparse, s.dense1, &s.beta,
                                             s.dense2, CUDA_R_32F, s.spmm_alg, &bytes));
  s.workspace = s.allocate(ctx, bytes, preprocess);
  if (preprocess) {
    TSR_CUSPARSE_CHECK(cusparseSpMM_preprocess(s.handle, op, op, &s.alpha, s.sparse, s.dense1, &s.beta,
                                               s.dense2, CUDA_R_32F, s.spmm_alg, s.workspace));
  }
}

}  // namespace

CusparsePlan::CusparsePlan(std::unique_ptr<State> s) : s_(std::move(s)) {}
CusparsePlan::CusparsePlan(CusparsePlan&&) noexcept = default;
CusparsePlan& CusparsePlan::operator=(CusparsePlan&&) noexcept = default;
CusparsePlan::~CusparsePlan() = default;

template <class I>
CusparsePlan CusparsePlan::spmm(Context& ctx, const CsrView<float, I>& a, DenseView<const float> b,
                                DenseView<float> c, float alpha, float beta, int alg, bool preprocess) {
  auto s = std::make_unique<State>();
  s->spmm_alg = spmm_alg(alg);
  s->alpha = alpha, s->beta = beta;
  if (a.rows == 0 || c.cols == 0) return CusparsePlan(std::move(s));
  if (a.nnz == 0) {  // cuSPARSE is not asked about empty matrices: C = beta * C is our kernel's job
    s->ours = [&ctx, a, b, c, alpha, beta] { cuda::spmm_csr_row_split(ctx, a, b, c, alpha, beta, 32, 8, 1); };
    return CusparsePlan(std::move(s));
  }
  s->kind = State::Kind::spmm;
  s->handle = static_cast<cusparseHandle_t>(ctx.cusparse_handle());
  s->sparse = make_csr(a, const_cast<float*>(a.values));
  finish_spmm(ctx, *s, b, c, preprocess);
  return CusparsePlan(std::move(s));
}

namespace {

// The start both BSR plans share: cuSPARSE's shape rules (square, whole blocks), the state, and
// the plans that never ask cuSPARSE (nothing to do, or C = beta * C for an empty matrix: done
// is set then).
template <class I>
std::unique_ptr<CusparsePlan::State> start_bsr_plan(Context& ctx, const BsrView<float, I>& a,
                                                    DenseView<float> c, float alpha, float beta,
                                                    cusparseSpMMAlg_t alg, const char* variant,
                                                    bool& done) {
  TSR_CHECK(a.block_rows == a.block_cols, variant, ": ", a.block_rows, "x", a.block_cols,
            " blocks; cuSPARSE takes square blocks only");
  TSR_CHECK(a.rows % a.block_rows == 0 && a.cols % a.block_cols == 0, variant, ": a ", a.rows,
            "x", a.cols, " matrix is not made of whole ", a.block_rows, "x", a.block_cols,
            " blocks (cuSPARSE takes whole blocks only)");
  auto s = std::make_unique<CusparsePlan::State>();
  s->spmm_alg = alg;
  s->alpha = alpha, s->beta = beta;
  done = a.rows == 0 || c.cols == 0 || a.num_blocks == 0;
  if (a.rows > 0 && c.cols > 0 && a.num_blocks == 0) {
    s->ours = [&ctx, c, beta] { cuda::scale_rows(ctx, c, beta); };
  }
  if (!done) {
    s->kind = CusparsePlan::State::Kind::spmm;
    s->handle = static_cast<cusparseHandle_t>(ctx.cusparse_handle());
  }
  return s;
}

template <class T>
std::vector<T> download(Context& ctx, const T* device, size_t n) {
  std::vector<T> host(n);
  if (n > 0) {
    TSR_CUDA_CHECK(cudaMemcpyAsync(host.data(), device, n * sizeof(T), cudaMemcpyDeviceToHost,
                                   static_cast<cudaStream_t>(ctx.stream())));
  }
  ctx.synchronize();
  return host;
}

}  // namespace

template <class I>
CusparsePlan CusparsePlan::spmm_blocked_ell(Context& ctx, const BsrView<float, I>& a, DenseView<const float> b,
                                            DenseView<float> c, float alpha, float beta, bool preprocess) {
  bool done = false;
  auto s = start_bsr_plan(ctx, a, c, alpha, beta, CUSPARSE_SPMM_BLOCKED_ELL_ALG1,
                          "bsr.cusparse_blocked_ell", done);
  if (done) return CusparsePlan(std::move(s));
  // Blocked-ELL: block row i holds `width` block slots, the first indptr[i+1] - indptr[i] of them
  // A's blocks in order, the rest column -1 (empty). Values: a rows x (width * block) row-major
  // matrix whose slot s spans columns [s * block, (s + 1) * block).
  const int64_t block = a.block_rows, block_row_count = a.block_row_count();
  const std::vector<I> indptr = download(ctx, a.indptr, size_t(block_row_count + 1));
  const std::vector<I> indices = download(ctx, a.indices, size_t(a.num_blocks));
  const std::vector<float> values = download(ctx, a.values, size_t(a.num_blocks * block * block));
  // The copy below indexes by these arrays: validate them here (the op validates A on the
  // device first, a plan made directly does not).
  BsrView<float, I> host = a;
  host.indptr = indptr.data(), host.indices = indices.data(), host.values = values.data();
  host.space = MemorySpace::host;
  validate(host);
  const int64_t block_cols = a.cols / block;
  int64_t width = 0;
  for (int64_t i = 0; i < block_row_count; ++i) {
    width = std::max<int64_t>(width, int64_t(indptr[size_t(i + 1)] - indptr[size_t(i)]));
  }
  // cuSPARSE's Blocked-ELL SpMM takes 32-bit block columns only (64-bit ones are "not
  // supported"): the copy uses int32 whatever A's index type.
  TSR_CHECK(block_cols <= int64_t(INT32_MAX), "bsr.cusparse_blocked_ell: ", block_cols,
            " block columns exceed the 32-bit block column indices cuSPARSE's Blocked-ELL takes");
  // Every block row padded to the longest: refuse a copy that would not fit beside the rest in
  // device memory (a skewed matrix pads to many times its size) before building it on the host.
  const int64_t ell_cols = width * block;
  const double padded_bytes = double(a.rows) * double(ell_cols) * sizeof(float) +
                              double(block_row_count) * double(width) * sizeof(int32_t);
  size_t free_bytes = 0, total_bytes = 0;
  TSR_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  TSR_CHECK(padded_bytes <= 0.5 * double(free_bytes), "bsr.cusparse_blocked_ell: padding every block row to the longest (",
            width, " blocks) takes ", padded_bytes / 1e6, " MB, ", padded_bytes / (double(a.num_blocks) * block * block * 4),
            "x the matrix's values, over half the free device memory (", double(free_bytes) / 1e6,
            " MB); bsr.cusparse and bsr.tensor_core take the matrix as it is");
  std::vector<int32_t> ell_index(size_t(block_row_count * width), -1);
  std::vector<float> ell_value(size_t(a.rows * ell_cols), 0.0f);
  for (int64_t i = 0; i < block_row_count; ++i) {
    for (int64_t k = int64_t(indptr[i]); k < int64_t(indptr[i + 1]); ++k) {
      const int64_t slot = k - int64_t(indptr[i]);
      ell_index[size_t(i * width + slot)] = int32_t(indices[size_t(k)]);
      for (int64_t r = 0; r < block; ++r) {
        const float* from = values.data() + (k * block + r) * block;  // blocks are row-major
        std::copy(from, from + block, ell_value.begin() + (i * block + r) * ell_cols + slot * block);
      }
    }
  }
  // Buffer's host-to-device copy completes before it returns (core/device.cpp), so cuSPARSE on
  // ctx.stream() reads the whole copy.
  s->ell_columns = Buffer<int32_t>(ell_index, MemorySpace::device);
  s->ell_values = Buffer<float>(ell_value, MemorySpace::device);
  TSR_CUSPARSE_CHECK(cusparseCreateBlockedEll(&s->sparse, a.rows, a.cols, block, ell_cols,
                                              s->ell_columns.data(), s->ell_values.data(), CUSPARSE_INDEX_32I,
                                              CUSPARSE_INDEX_BASE_ZERO, CUDA_R_32F));
  finish_spmm(ctx, *s, b, c, preprocess);
  return CusparsePlan(std::move(s));
}

template <class I>
CusparsePlan CusparsePlan::spmm_bsr(Context& ctx, const BsrView<float, I>& a, DenseView<const float> b,
                                    DenseView<float> c, float alpha, float beta, bool preprocess) {
  bool done = false;
  auto s = start_bsr_plan(ctx, a, c, alpha, beta, CUSPARSE_SPMM_BSR_ALG1, "bsr.cusparse", done);
  if (done) return CusparsePlan(std::move(s));
  TSR_CUSPARSE_CHECK(cusparseCreateBsr(&s->sparse, a.block_row_count(), a.cols / a.block_cols,
                                       a.num_blocks, a.block_rows, a.block_cols,
                                       const_cast<I*>(a.indptr), const_cast<I*>(a.indices),
                                       const_cast<float*>(a.values), index_type<I>(), index_type<I>(),
                                       CUSPARSE_INDEX_BASE_ZERO, CUDA_R_32F, CUSPARSE_ORDER_ROW));
  finish_spmm(ctx, *s, b, c, preprocess);
  return CusparsePlan(std::move(s));
}

template <class I>
CusparsePlan CusparsePlan::sddmm(Context& ctx, const CsrView<float, I>& a, DenseView<const float> x,
                                 DenseView<const float> y, float* out, bool preprocess, SddmmLayout layout) {
  // Shapes first, before cuSPARSE is touched: it would read past a too-small operand.
  TSR_CHECK(x.rows == a.rows, "cusparse sddmm: X has ", x.rows, " rows, A ", a.rows);
  if (layout == SddmmLayout::yt_row_major) {
    TSR_CHECK(y.rows == x.cols && y.cols == a.cols, "cusparse sddmm: Y^T is ", y.rows, " x ", y.cols,
              "; X has ", x.cols, " columns and A ", a.cols);
  } else {
    TSR_CHECK(y.cols == x.cols && y.rows == a.cols, "cusparse sddmm: Y is ", y.rows, " x ", y.cols,
              "; A has ", a.cols, " columns and X ", x.cols);
  }
  auto s = std::make_unique<State>();
  if (a.rows == 0 || a.nnz == 0) return CusparsePlan(std::move(s));
  if (x.cols == 0) {  // an empty dot product: cuSPARSE is not asked
    s->ours = [&ctx, out, nnz = a.nnz] {
      TSR_CUDA_CHECK(cudaMemsetAsync(out, 0, size_t(nnz) * sizeof(float), static_cast<cudaStream_t>(ctx.stream())));
    };
    return CusparsePlan(std::move(s));
  }
  s->kind = State::Kind::sddmm;
  s->handle = static_cast<cusparseHandle_t>(ctx.cusparse_handle());
  s->sparse = make_csr(a, out);  // the output takes A's pattern
  s->dense1 = make_dense(x.rows, x.cols, x.ld, x.data, CUSPARSE_ORDER_ROW);
  switch (layout) {
    case SddmmLayout::y_as_col_major:  // Y^T as a column-major [F, cols] matrix: Y's bytes
      s->dense2 = make_dense(y.cols, y.rows, y.ld, y.data, CUSPARSE_ORDER_COL);
      break;
    case SddmmLayout::y_transposed:  // row-major Y, transposed by cuSPARSE
      s->dense2 = make_dense(y.rows, y.cols, y.ld, y.data, CUSPARSE_ORDER_ROW);
      s->sddmm_op_b = CUSPARSE_OPERATION_TRANSPOSE;
      break;
    case SddmmLayout::yt_row_major:
      s->dense2 = make_dense(y.rows, y.cols, y.ld, y.data, CUSPARSE_ORDER_ROW);
      break;
  }
  const cusparseOperation_t op = CUSPARSE_OPERATION_NON_TRANSPOSE, op_b = s->sddmm_op_b;
  size_t bytes = 0;
  TSR_CUSPARSE_CHECK(cusparseSDDMM_bufferSize(s->handle, op, op_b, &s->alpha, s->dense1, s->dense2, &s->beta,
                                              s->sparse, CUDA_R_32F, CUSPARSE_SDDMM_ALG_DEFAULT, &bytes));
  s->workspace = s->allocate(ctx, bytes, preprocess);
  if (preprocess) {
    TSR_CUSPARSE_CHECK(cusparseSDDMM_preprocess(s->handle, op, op_b, &s->alpha, s->dense1, s->dense2,
                                                &s->beta, s->sparse, CUDA_R_32F,
                                                CUSPARSE_SDDMM_ALG_DEFAULT, s->workspace));
  }
  return CusparsePlan(std::move(s));
}

void CusparsePlan::run() {
  const cusparseOperation_t op = CUSPARSE_OPERATION_NON_TRANSPOSE;
  State& s = *s_;
  if (s.ours) {
    s.ours();
  } else if (s.kind == State::Kind::spmm) {
    TSR_CUSPARSE_CHECK(cusparseSpMM(s.handle, op, op, &s.alpha, s.sparse, s.dense1, &s.beta, s.dense2,
                                    CUDA_R_32F, s.spmm_alg, s.workspace));
  } else if (s.kind == State::Kind::sddmm) {
    TSR_CUSPARSE_CHECK(cusparseSDDMM(s.handle, op, s.sddmm_op_b, &s.alpha, s.dense1, s.dense2, &s.beta,
                                     s.sparse, CUDA_R_32F, CUSPARSE_SDDMM_ALG_DEFAULT, s.workspace));
  }
}

namespace cuda {

template <class V, class I>
void spmm_csr_cusparse(Context& ctx, const CsrView<V, I>& a, DenseView<const V> b,
                       DenseView<float> c, float alpha, float beta, int alg) {
  if constexpr (std::is_same_v<V, float>) {
    CusparsePlan::spmm(ctx, a, b, c, alpha, beta, alg, false).run();
  } else {
    TSR_FAIL("csr.cusparse runs f32 values in this version (got ", dtype_name(dtype_of<V>()), ")");
  }
}

template <class V, class I>
void spmm_bsr_cusparse(Context& ctx, const BsrView<V, I>& a, DenseView<const V> b,
                       DenseView<float> c, float alpha, float beta, bool blocked_ell) {
  const char* variant = blocked_ell ? "bsr.cusparse_blocked_ell" : "bsr.cusparse";
  if constexpr (std::is_same_v<V, float>) {
    if (blocked_ell) {
      // The conversion's host round trip synchronises; a plan (ops::CusparsePlan) makes it once.
      CusparsePlan::spmm_blocked_ell(ctx, a, b, c, alpha, beta, false).run();
    } else {
      CusparsePlan::spmm_bsr(ctx, a, b, c, alpha, beta, false).run();
    }
  } else {
    TSR_FAIL(variant, " runs f32 values in this version (got ", dtype_name(dtype_of<V>()), ")");
  }
}

template <class V, class I>
void sddmm_csr_cusparse(Context& ctx, const CsrView<V, I>& a, DenseView<const V> x,
                        DenseView<const V> y, bool scale_by_a, float* out) {
  if constexpr (std::is_same_v<V, float>) {
    CusparsePlan::sddmm(ctx, a, x, y, out, false).run();
    if (scale_by_a) scale_by_values(ctx, a, out);
  } else {
    TSR_FAIL("csr.cusparse runs f32 values in this version (got ", dtype_name(dtype_of<V>()), ")");
  }
}

#define TSR_INSTANTIATE_CUSPARSE_VARIANTS(V, I)                                                   \
  template void spmm_csr_cusparse(Context&, const CsrView<V, I>&, DenseView<const V>,             \
                                  DenseView<float>, float, float, int);                           \
  template void spmm_bsr_cusparse(Context&, const BsrView<V, I>&, DenseView<const V>,             \
                                  DenseView<float>, float, float, bool);                          \
  template void sddmm_csr_cusparse(Context&, const CsrView<V, I>&, DenseView<const V>,            \
                                   DenseView<const V>, bool, float*);
TSR_FOR_EACH_COMPUTE_TYPE(TSR_INSTANTIATE_CUSPARSE_VARIANTS)

}  // namespace cuda

#else  // no CUDA: plans cannot be made

struct CusparsePlan::State {};
CusparsePlan::CusparsePlan(std::unique_ptr<State> s) : s_(std::move(s)) {}
CusparsePlan::CusparsePlan(CusparsePlan&&) noexcept = default;
CusparsePlan& CusparsePlan::operator=(CusparsePlan&&) noexcept = default;
CusparsePlan::~CusparsePlan() = default;

template <class I>
CusparsePlan CusparsePlan::spmm(Context&, const CsrView<float, I>&, DenseView<const float>,
                                DenseView<float>, float, float, int, bool) {
  TSR_FAIL("cuSPARSE plans need a build of Tessera with CUDA");
}
template <class I>
CusparsePlan CusparsePlan::spmm_bsr(Context&, const BsrView<float, I>&, DenseView<const float>,
                                    DenseView<float>, float, float, bool) {
  TSR_FAIL("cuSPARSE plans need a build of Tessera with CUDA");
}
template <class I>
CusparsePlan CusparsePlan::spmm_blocked_ell(Context&, const BsrView<float, I>&, DenseView<const float>,
                                            DenseView<float>, float, float, bool) {
  TSR_FAIL("cuSPARSE plans need a build of Tessera with CUDA");
}
template <class I>
CusparsePlan CusparsePlan::sddmm(Context&, const CsrView<float, I>&, DenseView<const float>,
                                 DenseView<const float>, float*, bool, SddmmLayout) {
  TSR_FAIL("cuSPARSE plans need a build of Tessera with CUDA");
}
void CusparsePlan::run() {}

#endif  // TESSERA_WITH_CUDA

template CusparsePlan CusparsePlan::spmm(Context&, const CsrView<float, int32_t>&, DenseView<const float>,
                                         DenseView<float>, float, float, int, bool);
template CusparsePlan CusparsePlan::spmm(Context&, const CsrView<float, int64_t>&, DenseView<const float>,
                                         DenseView<float>, float, float, int, bool);
template CusparsePlan CusparsePlan::spmm_blocked_ell(Context&, const BsrView<float, int32_t>&,
                                                     DenseView<const float>, DenseView<float>, float, float, bool);
template CusparsePlan CusparsePlan::spmm_blocked_ell(Context&, const BsrView<float, int64_t>&,
                                                     DenseView<const float>, DenseView<float>, float, float, bool);
template CusparsePlan CusparsePlan::spmm_bsr(Context&, const BsrView<float, int32_t>&,
                                             DenseView<const float>, DenseView<float>, float, float, bool);
template CusparsePlan CusparsePlan::spmm_bsr(Context&, const BsrView<float, int64_t>&,
                                             DenseView<const float>, DenseView<float>, float, float, bool);
template CusparsePlan CusparsePlan::sddmm(Context&, const CsrView<float, int32_t>&, DenseView<const float>,
                                          DenseView<const float>, float*, bool, SddmmLayout);
template CusparsePlan CusparsePlan::sddmm(Context&, const CsrView<float, int64_t>&, DenseView<const float>,
                                          DenseView<const float>, float*, bool, SddmmLayout);

}  // namespace tessera::ops
