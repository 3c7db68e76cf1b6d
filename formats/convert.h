// Conversions between every format and CSR (the canonical format). Round trips X -> CSR -> X and
// CSR -> X -> CSR are exact, with one stated exception: BSR stores blocks densely, so an explicit
// zero stored in a CSR is dropped by CSR -> BSR -> CSR. All conversions run on host data.
#pragma once

#include "formats/sparse.h"

namespace tessera {

/// hyb(c, k) parameters: c column partitions, buckets of widths 1, 2, ..., 2^k.
struct HybParams {
  int64_t column_parts = 1;  // c >= 1
  int max_width_log2 = 5;    // k >= 0: widest bucket holds 2^k entries per row
};

/// COO -> CSR keeps entries in their order within each row (stable by row); duplicates are kept.
template <class V, class I> Csr<V, I> coo_to_csr(const Coo<V, I>& coo);
template <class V, class I> Coo<V, I> csr_to_coo(const Csr<V, I>& csr);
template <class V, class I> Csc<V, I> csr_to_csc(const Csr<V, I>& csr);
template <class V, class I> Csr<V, I> csc_to_csr(const Csc<V, I>& csc);
/// Blocks of block_rows x block_cols; the last block row/column may be partial (zero-padded).
template <class V, class I> Bsr<V, I> csr_to_bsr(const Csr<V, I>& csr, int64_t block_rows, int64_t block_cols);
template <class V, class I> Csr<V, I> bsr_to_csr(const Bsr<V, I>& bsr);
/// width < 0: the longest row's length. A row longer than width is an error (use Hybrid).
template <class V, class I> Ell<V, I> csr_to_ell(const Csr<V, I>& csr, int64_t width = -1);
template <class V, class I> Csr<V, I> ell_to_csr(const Ell<V, I>& ell);
template <class V, class I> RaggedMatrix<V, I> csr_to_ragged(const Csr<V, I>& csr);
template <class V, class I> Csr<V, I> ragged_to_csr(const RaggedMatrix<V, I>& r);
template <class V, class I> Hybrid<V, I> csr_to_hybrid(const Csr<V, I>& csr, const HybParams& p);
/// Entries of all parts merged row by row; within a row, ordered by column partition, then by
/// the part's order (column-sorted input gives column-sorted output).
template <class V, class I> Csr<V, I> hybrid_to_csr(const Hybrid<V, I>& h);

/// Sorts each row by column and sums duplicate entries (in double, rounded to V once).
/// @throw tessera::Error when a finite sum overflows V, naming the row and column.
template <class V, class I> Csr<V, I> canonicalize(const Csr<V, I>& csr);
/// The transpose, as CSR.
template <class V, class I> Csr<V, I> transpose(const Csr<V, I>& csr);
/// Converts values to another type (rounding to nearest even for 16-bit types).
template <class W, class V, class I> Csr<W, I> cast_values(const Csr<V, I>& csr);
/// Converts the index type; throws when a size does not fit in J.
template <class J, class V, class I> Csr<V, J> cast_indices(const Csr<V, I>& csr);

/// Parameters for converting CSR into any format.
struct ConvertParams {
  int64_t block_rows = 4, block_cols = 4;  // BSR
  int64_t ell_width = -1;                  // ELL (-1: longest row)
  HybParams hyb;                           // Hybrid
};
template <class V, class I> AnySparse<V, I> from_csr(const Csr<V, I>& csr, Format f, const ConvertParams& p = {});
template <class V, class I> Csr<V, I> to_csr(const AnySparse<V, I>& m);

}  // namespace tessera
