// Host-callable launchers of the CUDA kernels (defined in ops/*/*.cu, compiled only when
// TESSERA_WITH_CUDA). Inputs are validated device views; work is queued on ctx.stream().
#pragma once

#include "core/context.h"
#include "core/dense.h"
#include "formats/sparse.h"

namespace tessera::ops::cuda {

/// Checks a device CSR's offsets (first 0, last nnz, monotone) and column range on the device;
/// throws tessera::Error naming the first offending position. Synchronises ctx.stream().
template <class V, class I>
void validate_csr(Context& ctx, const CsrView<V, I>& a);

/// The longest row of a device CSR (offsets assumed valid). Synchronises ctx.stream().
template <class V, class I>
int64_t max_row_length(Context& ctx, const CsrView<V, I>& a);

/// CSR SpMM (schedule csr.row_split): tpr threads per row, rpb rows per block, vec features
/// per thread. Throws when the knobs are out of range or vec > 1 meets unaligned rows.
template <class V, class I>
void spmm_csr_row_split(Context& ctx, const CsrView<V, I>& a, DenseView<const V> b,
                        DenseView<float> c, float alpha, float beta, int tpr, int rpb, int vec);

/// CSR SpMM (schedule csr.merge_path): the rows + nnz items of the merge path split evenly, ipt
/// items per team of tpr threads, vec features per thread; carries of rows shared by several
/// teams added by a second kernel in a fixed order (deterministic). Uses ctx.workspace().
template <class V, class I>
void spmm_csr_merge_path(Context& ctx, const CsrView<V, I>& a, DenseView<const V> b,
                         DenseView<float> c, float alpha, float beta, int tpr, int vec, int64_t ipt);

/// CSR SpMM through cuSPARSE's generic API (schedule csr.cusparse), alg 1..3 for
/// CUSPARSE_SPMM_CSR_ALG1..3. f32 values; the workspace comes from ctx.
template <class V, class I>
void spmm_csr_cusparse(Context& ctx, const CsrView<V, I>& a, DenseView<const V> b,
                       DenseView<float> c, float alpha, float beta, int alg);

/// CSR SDDMM (schedule csr.row_split): a team of tpr threads per row, vec features per thread,
/// four edges in flight, team shuffle reductions.
template <class V, class I>
void sddmm_csr_row_split(Context& ctx, const CsrView<V, I>& a, DenseView<const V> x,
                         DenseView<const V> y, bool scale_by_a, float* out, int tpr, int vec);

/// CSR SDDMM (schedule csr.edge_group): the nonzeros split evenly, ept consecutive edges per
/// team of tpe threads, vec features per thread, four edges in flight, team shuffle reductions.
template <class V, class I>
void sddmm_csr_edge_group(Context& ctx, const CsrView<V, I>& a, DenseView<const V> x,
                          DenseView<const V> y, bool scale_by_a, float* out, int tpe, int vec,
                          int64_t ept);

/// CSR SDDMM through cusparseSDDMM (schedule csr.cusparse), f32 values.
template <class V, class I>
void sddmm_csr_cusparse(Context& ctx, const CsrView<V, I>& a, DenseView<const V> x,
                        DenseView<const V> y, bool scale_by_a, float* out);

/// out[e] *= A.values[e] for every stored entry.
template <class V, class I>
void scale_by_values(Context& ctx, const CsrView<V, I>& a, float* out);

}  // namespace tessera::ops::cuda
