// cuSPARSE as a peer measured at its best: a plan makes the descriptors, sizes and allocates the
// workspace and runs cusparse*_preprocess once for fixed operands; run() then only launches. A
// plan uses its Context (handle, stream, workspace) on every run: the context must outlive it.
// ops::spmm/sddmm with a csr.cusparse schedule build a plan per call (no preprocessing) on the
// context's workspace; code that multiplies the same operands many times (the benchmarks, a
// GNN layer) holds a plan instead.
#pragma once

#include <memory>

#include "core/context.h"
#include "core/dense.h"
#include "formats/sparse.h"

namespace tessera::ops {

class CusparsePlan {
 public:
  /// C = alpha * A * B + beta * C with cusparseSpMM CSR algorithm alg (1..3), f32 values.
  /// The operands' arrays, shapes and A's sparsity pattern must not change while the plan lives
  /// (values may). preprocess: run cusparseSpMM_preprocess once (the workspace is then owned).
  template <class I>
  static CusparsePlan spmm(Context& ctx, const CsrView<float, I>& a, DenseView<const float> b,
                           DenseView<float> c, float alpha, float beta, int alg, bool preprocess = true);
  /// C = alpha * A * B + beta * C for a BSR A with cusparseSpMM (CUSPARSE_SPMM_BSR_ALG1), f32,
  /// square row-major blocks. cuSPARSE takes whole blocks: A's rows and columns must be
  /// multiples of the block size. Same lifetime rules as spmm().
  template <class I>
  static CusparsePlan spmm_bsr(Context& ctx, const BsrView<float, I>& a, DenseView<const float> b,
                               DenseView<float> c, float alpha, float beta, bool preprocess = true);
  /// The same product through cuSPARSE's Blocked-ELL SpMM (CUSPARSE_SPMM_BLOCKED_ELL_ALG1): the
  /// plan copies A into Blocked-ELL once (every block row padded with empty blocks to the
  /// longest; a host round trip), so it holds A's values as they were when it was made. Square,
  /// whole blocks; f32, which cuSPARSE rounds to tf32 (relative error ~2.6e-4 measured on an
  /// H200); 32-bit block columns in the copy whatever A's index type. The padded copy takes
  /// rows x (longest block row x block) values.
  template <class I>
  static CusparsePlan spmm_blocked_ell(Context& ctx, const BsrView<float, I>& a, DenseView<const float> b,
                                       DenseView<float> c, float alpha, float beta, bool preprocess = true);
  /// How cusparseSDDMM's second dense operand (the product's [F, cols] factor) is described.
  /// cuSPARSE reads each layout differently; the benchmark times all three.
  enum class SddmmLayout {
    y_as_col_major,     ///< y is Y ([cols, F], row-major), described as column-major Y^T (default)
    y_transposed,       ///< y is Y, described as row-major [cols, F] with opB = transpose
    yt_row_major,       ///< y is Y^T itself, a row-major [F, cols] matrix
  };
  /// out[e] = <X[row(e)], Y[col(e)]> over A's pattern with cusparseSDDMM (f32); out has nnz
  /// entries. Same lifetime rules as spmm().
  template <class I>
  static CusparsePlan sddmm(Context& ctx, const CsrView<float, I>& a, DenseView<const float> x,
                            DenseView<const float> y, float* out, bool preprocess = true,
                            SddmmLayout layout = SddmmLayout::y_as_col_major);

  /// Queues the product on the context's stream.
  void run();

  CusparsePlan(CusparsePlan&&) noexcept;
  CusparsePlan& operator=(CusparsePlan&&) noexcept;
  ~CusparsePlan();

  struct State;  // defined (and only usable) in cusparse_plan.cpp

 private:
  explicit CusparsePlan(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

}  // namespace tessera::ops
