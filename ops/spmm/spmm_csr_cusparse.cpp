// CSR SpMM through cuSPARSE's generic API: the vendor peer as one more variant of ops::spmm
// (schedule csr.cusparse:alg=1|2|3). Host code; built only with CUDA.
#include "core/config.h"

#if TESSERA_WITH_CUDA

#include <cusparse.h>

#include "core/cuda_check.h"
#include "core/error.h"
#include "ops/cuda_kernels.h"

namespace tessera::ops::cuda {

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

// Owns the three descriptors of one SpMM call.
struct Descriptors {
  cusparseSpMatDescr_t a = nullptr;
  cusparseDnMatDescr_t b = nullptr, c = nullptr;
  ~Descriptors() {
    if (a) cusparseDestroySpMat(a);
    if (b) cusparseDestroyDnMat(b);
    if (c) cusparseDestroyDnMat(c);
  }
};

}  // namespace

template <class V, class I>
void spmm_csr_cusparse(Context& ctx, const CsrView<V, I>& a, DenseView<const V> b,
                       DenseView<float> c, float alpha, float beta, int alg) {
  TSR_CHECK((std::is_same_v<V, float>), "csr.cusparse runs f32 values in this version (got ",
            dtype_name(dtype_of<V>()), ")");
  const cusparseSpMMAlg_t algorithm = spmm_alg(alg);
  if (a.rows == 0 || c.cols == 0) return;
  if (a.nnz == 0) {  // cuSPARSE is not asked about empty matrices: C = beta * C is our own kernel
    spmm_csr_row_split(ctx, a, b, c, alpha, beta, 32, 8, 1);
    return;
  }
  auto handle = static_cast<cusparseHandle_t>(ctx.cusparse_handle());
  Descriptors d;
  TSR_CUSPARSE_CHECK(cusparseCreateCsr(&d.a, a.rows, a.cols, a.nnz, const_cast<I*>(a.indptr),
                                       const_cast<I*>(a.indices), const_cast<V*>(a.values),
                                       index_type<I>(), index_type<I>(), CUSPARSE_INDEX_BASE_ZERO,
                                       CUDA_R_32F));
  TSR_CUSPARSE_CHECK(cusparseCreateDnMat(&d.b, b.rows, b.cols, b.ld, const_cast<V*>(b.data),
                                         CUDA_R_32F, CUSPARSE_ORDER_ROW));
  TSR_CUSPARSE_CHECK(cusparseCreateDnMat(&d.c, c.rows, c.cols, c.ld, c.data, CUDA_R_32F,
                                         CUSPARSE_ORDER_ROW));
  const cusparseOperation_t op = CUSPARSE_OPERATION_NON_TRANSPOSE;
  size_t bytes = 0;
  TSR_CUSPARSE_CHECK(cusparseSpMM_bufferSize(handle, op, op, &alpha, d.a, d.b, &beta, d.c,
                                             CUDA_R_32F, algorithm, &bytes));
  void* workspace = ctx.workspace(bytes);
  TSR_CUSPARSE_CHECK(cusparseSpMM(handle, op, op, &alpha, d.a, d.b, &beta, d.c, CUDA_R_32F,
                                  algorithm, workspace));
}

#define TSR_INSTANTIATE_SPMM_CUSPARSE(V, I)                                               \
  template void spmm_csr_cusparse(Context&, const CsrView<V, I>&, DenseView<const V>,     \
                                  DenseView<float>, float, float, int);
TSR_FOR_EACH_COMPUTE_TYPE(TSR_INSTANTIATE_SPMM_CUSPARSE)

}  // namespace tessera::ops::cuda

#endif  // TESSERA_WITH_CUDA
