// Host-callable launchers of the CUDA kernels (defined in ops/*/*.cu, compiled only when
// TESSERA_WITH_CUDA). Inputs are validated device views; work is queued on ctx.stream().
#pragma once

#include <string>

#include "core/context.h"
#include "core/dense.h"
#include "formats/sparse.h"

namespace tessera::ops {
enum class SpmmReduce;  // ops/spmm/spmm.h
}  // namespace tessera::ops

namespace tessera::ops::cuda {

/// Checks a device CSR's offsets (first 0, last nnz, monotone) and column range on the device;
/// throws tessera::Error naming the first offending position (arrays called what.indptr, ...).
/// Synchronises ctx.stream().
template <class V, class I>
void validate_csr(Context& ctx, const CsrView<V, I>& a, const char* what = "Csr");

/// Device BSR: block shape, offsets over block rows, block columns in range.
template <class V, class I>
void validate_bsr(Context& ctx, const BsrView<V, I>& a);
/// Device COO: rows in [0, rows), columns in [0, cols).
template <class V, class I>
void validate_coo(Context& ctx, const CooView<V, I>& a);
/// Device ELL: every slot's column in [0, cols) or kPadIndex (arrays called what.indices, ...).
template <class V, class I>
void validate_ell(Context& ctx, const EllView<V, I>& a, const std::string& what = "Ell");
/// Device Hybrid: each part's shape and column range, its row map inside [0, rows), its columns
/// (ELL or CSR) inside the part's column range.
template <class V, class I>
void validate_hybrid(Context& ctx, const Hybrid<V, I>& a);

/// The longest row of a device CSR (offsets assumed valid). Synchronises ctx.stream().
template <class V, class I>
int64_t max_row_length(Context& ctx, const CsrView<V, I>& a);
/// The longest row of a device CSR: the Context's row-length hint for it, or max_row_length
/// recorded as the hint (a matrix is measured once per Context; see Context::row_length_hint).
template <class V, class I>
int64_t max_row_length_hinted(Context& ctx, const CsrView<V, I>& a);

/// CSR SpMM (schedule csr.row_split): tpr threads per row, rpb rows per block, vec features
/// per thread. Throws when the knobs are out of range or vec > 1 meets unaligned rows.
template <class V, class I>
void spmm_csr_row_split(Context& ctx, const CsrView<V, I>& a, DenseView<const V> b,
                        DenseView<float> c, float alpha, float beta, int tpr, int rpb, int vec);

/// CSR SpMM (schedule csr.merge_path): the rows + nnz items of the merge path split evenly, ipt
/// items per team of tpr threads, vec features per thread; carries of rows shared by several
/// teams added by a second kernel in a fixed order (deterministic). Uses ctx.workspace().
/// Throws when ipt is outside [1, 2^30] or B's rows are more than 2 GiB apart (its gather
/// loop's offsets are 32-bit).
template <class V, class I>
void spmm_csr_merge_path(Context& ctx, const CsrView<V, I>& a, DenseView<const V> b,
                         DenseView<float> c, float alpha, float beta, int tpr, int vec, int64_t ipt);

/// CSR SpMM for 16-bit values (schedule csr.nnz_split): the merge path of row ends and nonzeros
/// in equal stretches of ept items (0: one wave of teams), one per team of 4 lanes x 8 features,
/// g (4 or 8) gathers a team in flight; queue: a wave of teams takes the stretches from a
/// counter. Rows shared by teams get their carries added in a fixed order (deterministic). Uses ctx.workspace(): 16 bytes of team start and F floats of carry a
/// team ((rows + nnz) / ept teams). Throws for f32 values, F not a multiple of 32, or B / C rows
/// not aligned to 8 elements.
template <class V, class I>
void spmm_csr_nnz_split(Context& ctx, const CsrView<V, I>& a, DenseView<const V> b,
                        DenseView<float> c, float alpha, float beta, int g, int64_t ept, bool queue);

/// Whether p may be used by kernels on `device`: its device memory, or managed memory.
bool device_memory_of(const void* p, int device);
/// Whether p is device memory the host cannot read (not host, registered or managed memory).
bool device_only_memory(const void* p);

/// CSR SpMM with reduce = max or min and an optional arg output [rows, F] in device memory
/// (checked): the merge path in stretches, products met in row order, semantics as ops::spmm
/// documents them. Deterministic; no schedule.
template <class V, class I>
void spmm_csr_reduce(Context& ctx, const CsrView<V, I>& a, DenseView<const V> b, DenseView<float> c,
                     float alpha, float beta, SpmmReduce reduce, int64_t* arg);
/// reduce = mean's last pass over the row sums (the SpMM sum kernels' output): C[r, f] = alpha *
/// sums[r, f] / entries(r) + beta * C[r, f], 0 for an empty row. sums may alias C when beta == 0.
template <class I>
void spmm_mean_finish(Context& ctx, const I* indptr, int64_t rows, DenseView<const float> sums, DenseView<float> c,
                      float alpha, float beta);

/// CSR SpMM through cuSPARSE's generic API (schedule csr.cusparse), alg 1..3 for
/// CUSPARSE_SPMM_CSR_ALG1..3. f32 values; the workspace comes from ctx.
template <class V, class I>
void spmm_csr_cusparse(Context& ctx, const CsrView<V, I>& a, DenseView<const V> b,
                       DenseView<float> c, float alpha, float beta, int alg);

/// ELL SpMM (schedule ell.row_split): the csr.row_split structure over fixed-width rows; padding
/// slots are skipped.
template <class V, class I>
void spmm_ell_row_split(Context& ctx, const EllView<V, I>& a, DenseView<const V> b,
                        DenseView<float> c, float alpha, float beta, int tpr, int rpb, int vec);

/// Hybrid SpMM (schedule hyb.fused): every part (ELL or CSR) in one launch (48 parts a launch),
/// tpr / rpb / vec as in csr.row_split. Rows produced by several parts or split pieces are
/// combined by float atomics (atomic = true) or by a deterministic two-pass reduction (sorts the
/// local rows by global row; uses ctx.workspace() and synchronises ctx.stream()).
template <class V, class I>
void spmm_hybrid_fused(Context& ctx, const Hybrid<V, I>& a, DenseView<const V> b,
                       DenseView<float> c, float alpha, float beta, int tpr, int rpb, int vec,
                       bool atomic);

/// BSR SpMM on tensor cores (schedule bsr.tensor_core): warps_per_block_row (1, 2, 4) warps split
/// a block row's blocks, each holding features_per_warp (32 or 64) features; fragments loaded
/// straight from global memory; mma.sync over bf16 / f16, or tf32 for f32 values (so f32
/// products carry tf32 rounding). Blocks up to 32 x 64.
template <class V, class I>
void spmm_bsr_tensor_core(Context& ctx, const BsrView<V, I>& a, DenseView<const V> b,
                          DenseView<float> c, float alpha, float beta, int features_per_warp,
                          int warps_per_block_row);

/// C = beta * C (C = 0 when beta == 0, never reading C).
void scale_rows(Context& ctx, DenseView<float> c, float beta);

/// BSR SpMM through cuSPARSE's generic API, f32, square blocks, whole blocks only: schedule
/// bsr.cusparse (CUSPARSE_SPMM_BSR_ALG1) or, with blocked_ell, bsr.cusparse_blocked_ell
/// (CUSPARSE_SPMM_BLOCKED_ELL_ALG1 on a Blocked-ELL copy made per call; synchronises).
template <class V, class I>
void spmm_bsr_cusparse(Context& ctx, const BsrView<V, I>& a, DenseView<const V> b,
                       DenseView<float> c, float alpha, float beta, bool blocked_ell);

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

/// CSR SDDMM (schedule csr.edge_batch): csr.edge_group's split (ept edges per team of tpe
/// threads) walked in batches of eight gathered Y rows, column indices loaded a chunk ahead, X's
/// row slice held while the team stays on a row; F past one pass (tpe * vec) walked again, adding
/// to the outputs. Throws when ept is outside [1, 2^30].
template <class V, class I>
void sddmm_csr_edge_batch(Context& ctx, const CsrView<V, I>& a, DenseView<const V> x,
                          DenseView<const V> y, bool scale_by_a, float* out, int tpe, int vec,
                          int64_t ept);

/// CSR SDDMM (schedule csr.row_batch): a warp per row, its 32 / tpe teams of tpe threads taking
/// the row's edges in turn, eight gathered Y rows per team in flight, vec features per thread,
/// column indices 64 at a time; F past one pass (tpe * vec) walked with the sums in registers.
template <class V, class I>
void sddmm_csr_row_batch(Context& ctx, const CsrView<V, I>& a, DenseView<const V> x,
                         DenseView<const V> y, bool scale_by_a, float* out, int tpe, int vec);

/// COO SDDMM (schedule coo.edge_group): csr.edge_group's team walk over a COO matrix, each edge
/// reading its row from a.row.
template <class V, class I>
void sddmm_coo_edge_group(Context& ctx, const CooView<V, I>& a, DenseView<const V> x,
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
