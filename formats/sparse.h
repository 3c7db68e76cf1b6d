// Sparse matrix containers. Each format has an owning struct (Buffers on the host or a device) and a
// trivially copyable, non-owning view that kernels take. CSR is the canonical format: every other
// format converts to and from it exactly (formats/convert.h).
//
// Index type I is int32_t or int64_t; value type V is float, double, bf16 or f16. Every size a
// format stores (rows, cols, nnz, slot counts) must fit in I: validate() checks it.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <variant>
#include <vector>

#include "core/buffer.h"
#include "core/dtype.h"

namespace tessera {

/// Column index marking an unused (padding) slot in ELL rows.
template <class I>
inline constexpr I kPadIndex = I(-1);

// ---------------------------------------------------------------------------------------------
// Views (non-owning; what kernels take). Arrays are read-only through a view.

template <class V, class I>
struct CooView {
  int64_t rows = 0, cols = 0, nnz = 0;
  const I* row = nullptr;     // [nnz] row of each entry
  const I* col = nullptr;     // [nnz] column of each entry
  const V* values = nullptr;  // [nnz]
  MemorySpace space = MemorySpace::host;
};

template <class V, class I>
struct CsrView {
  int64_t rows = 0, cols = 0, nnz = 0;
  const I* indptr = nullptr;   // [rows + 1] offsets; indptr[0] = 0, indptr[rows] = nnz
  const I* indices = nullptr;  // [nnz] column of each entry
  const V* values = nullptr;   // [nnz]
  MemorySpace space = MemorySpace::host;
};

template <class V, class I>
struct CscView {
  int64_t rows = 0, cols = 0, nnz = 0;
  const I* indptr = nullptr;   // [cols + 1] offsets; indptr[cols] = nnz
  const I* indices = nullptr;  // [nnz] row of each entry
  const V* values = nullptr;   // [nnz]
  MemorySpace space = MemorySpace::host;
};

template <class V, class I>
struct BsrView {
  int64_t rows = 0, cols = 0;       // logical shape; the last block row/column may be partial
  int64_t block_rows = 1;           // r: rows per block
  int64_t block_cols = 1;           // c: columns per block
  int64_t num_blocks = 0;
  const I* indptr = nullptr;   // [ceil(rows / r) + 1] offsets into blocks
  const I* indices = nullptr;  // [num_blocks] block-column of each block
  const V* values = nullptr;   // [num_blocks * r * c], each block row-major; slots past the
                               // logical shape hold zero
  MemorySpace space = MemorySpace::host;
  int64_t block_row_count() const { return (rows + block_rows - 1) / block_rows; }
};

template <class V, class I>
struct EllView {
  int64_t rows = 0, cols = 0;
  int64_t width = 0;           // slots per row
  const I* indices = nullptr;  // [rows * width] row-major; kPadIndex<I> marks padding
  const V* values = nullptr;   // [rows * width]; padding slots hold zero
  MemorySpace space = MemorySpace::host;
};

// ---------------------------------------------------------------------------------------------
// Owning containers.

template <class V, class I>
struct Coo {
  int64_t rows = 0, cols = 0;
  Buffer<I> row;     // [nnz]
  Buffer<I> col;     // [nnz]
  Buffer<V> values;  // [nnz]
  int64_t nnz() const { return int64_t(values.size()); }
  MemorySpace space() const { return values.space(); }
  CooView<V, I> view() const { return {rows, cols, nnz(), row.data(), col.data(), values.data(), space()}; }
  Coo to(MemorySpace s) const { return {rows, cols, row.to(s), col.to(s), values.to(s)}; }
};

template <class V, class I>
struct Csr {
  int64_t rows = 0, cols = 0;
  Buffer<I> indptr;   // [rows + 1]
  Buffer<I> indices;  // [nnz] column of each entry
  Buffer<V> values;   // [nnz]
  int64_t nnz() const { return int64_t(values.size()); }
  MemorySpace space() const { return indptr.space(); }
  CsrView<V, I> view() const {
    return {rows, cols, nnz(), indptr.data(), indices.data(), values.data(), space()};
  }
  Csr to(MemorySpace s) const { return {rows, cols, indptr.to(s), indices.to(s), values.to(s)}; }
};

template <class V, class I>
struct Csc {
  int64_t rows = 0, cols = 0;
  Buffer<I> indptr;   // [cols + 1]
  Buffer<I> indices;  // [nnz] row of each entry
  Buffer<V> values;   // [nnz]
  int64_t nnz() const { return int64_t(values.size()); }
  MemorySpace space() const { return indptr.space(); }
  CscView<V, I> view() const {
    return {rows, cols, nnz(), indptr.data(), indices.data(), values.data(), space()};
  }
  Csc to(MemorySpace s) const { return {rows, cols, indptr.to(s), indices.to(s), values.to(s)}; }
};

template <class V, class I>
struct Bsr {
  int64_t rows = 0, cols = 0;
  int64_t block_rows = 1, block_cols = 1;
  Buffer<I> indptr;   // [ceil(rows / block_rows) + 1]
  Buffer<I> indices;  // [num_blocks] block-column of each block
  Buffer<V> values;   // [num_blocks * block_rows * block_cols]
  int64_t num_blocks() const { return int64_t(indices.size()); }
  MemorySpace space() const { return indptr.space(); }
  BsrView<V, I> view() const {
    return {rows, cols, block_rows, block_cols, num_blocks(), indptr.data(), indices.data(),
            values.data(), space()};
  }
  Bsr to(MemorySpace s) const {
    return {rows, cols, block_rows, block_cols, indptr.to(s), indices.to(s), values.to(s)};
  }
};

template <class V, class I>
struct Ell {
  int64_t rows = 0, cols = 0;
  int64_t width = 0;
  Buffer<I> indices;  // [rows * width], kPadIndex<I> for padding
  Buffer<V> values;   // [rows * width]
  MemorySpace space() const { return values.space(); }
  EllView<V, I> view() const { return {rows, cols, width, indices.data(), values.data(), space()}; }
  Ell to(MemorySpace s) const { return {rows, cols, width, indices.to(s), values.to(s)}; }
};

/// @brief Ragged array: values split into segments, segments grouped by outer levels.
/// levels[0] is outermost. levels[l] has (segment count at level l) + 1 offsets indexing level
/// l + 1 (or values, for the last level). One level is a plain ragged array; two levels group
/// segments (hyb buckets by column range, attention segments by head, ...).
template <class T, class I>
struct Ragged {
  std::vector<Buffer<I>> levels;  // levels[l]: [n_l + 1] monotone offsets into the next level
  Buffer<T> values;               // [levels.back()[n]] innermost elements
  int64_t segments(size_t level = 0) const {
    return levels.size() > level && levels[level].size() ? int64_t(levels[level].size()) - 1 : 0;
  }
  MemorySpace space() const { return values.space(); }
};

/// One stored entry of a sparse row: what a Ragged sparse matrix holds per element.
template <class V, class I>
struct SparseEntry {
  I col;
  V value;
};

/// @brief Ragged sparse matrix: one segment per row, each element a (column, value) entry.
/// It is CSR with its arrays interleaved; shown here so that segment-structured code
/// (buckets, clusters) composes with matrices.
template <class V, class I>
struct RaggedMatrix {
  int64_t rows = 0, cols = 0;
  Ragged<SparseEntry<V, I>, I> data;  // one level, rows segments
  int64_t nnz() const { return int64_t(data.values.size()); }
  MemorySpace space() const { return data.space(); }
};

/// @brief One part of a Hybrid matrix: a matrix over a subset of rows (row_map) whose entries
/// all lie in columns [col_begin, col_end). Column indices inside the part are global.
template <class V, class I>
struct HybridPart {
  int64_t col_begin = 0, col_end = 0;
  Buffer<I> row_map;                           // [part rows] global row of each local row; a row
                                               // may appear more than once (split long rows)
  std::variant<Ell<V, I>, Csr<V, I>> matrix;   // local rows x global cols
  int64_t part_rows() const { return int64_t(row_map.size()); }
  HybridPart to(MemorySpace s) const {
    HybridPart out{col_begin, col_end, row_map.to(s), {}};
    std::visit([&](const auto& m) { out.matrix = m.to(s); }, matrix);
    return out;
  }
};

/// @brief Hybrid matrix: a list of parts whose sum is the matrix, A = sum_p P_p^T M_p.
/// hyb(c, k) (SparseTIR): columns split into c ranges; in each range rows are bucketed by length
/// into ELL parts of widths 1, 2, 4, ..., 2^k; rows longer than 2^k are split across several
/// rows of the widest bucket.
template <class V, class I>
struct Hybrid {
  int64_t rows = 0, cols = 0;
  std::vector<HybridPart<V, I>> parts;
  Hybrid to(MemorySpace s) const {
    Hybrid out{rows, cols, {}};
    for (const auto& part : parts) out.parts.push_back(part.to(s));
    return out;
  }
  /// Where the parts live (host for an empty matrix).
  MemorySpace space() const { return parts.empty() ? MemorySpace::host : parts[0].row_map.space(); }
  /// Stored non-padding entries over all parts (host parts only for ELL).
  int64_t nnz() const {
    int64_t total = 0;
    for (const auto& part : parts) {
      if (const auto* csr = std::get_if<Csr<V, I>>(&part.matrix)) {
        total += csr->nnz();
      } else {
        const auto& ell = std::get<Ell<V, I>>(part.matrix);
        for (size_t i = 0; i < ell.indices.size(); ++i) total += ell.indices[i] != kPadIndex<I>;
      }
    }
    return total;
  }
};

/// Any format, for code that handles a matrix whatever its format (the CLI, benchmarks).
template <class V, class I>
using AnySparse = std::variant<Coo<V, I>, Csr<V, I>, Csc<V, I>, Bsr<V, I>, Ell<V, I>,
                               RaggedMatrix<V, I>, Hybrid<V, I>>;

enum class Format { coo, csr, csc, bsr, ell, ragged, hybrid };
const char* format_name(Format f);
/// Parses "coo|csr|csc|bsr|ell|ragged|hybrid" (throws naming the bad string).
Format parse_format(const std::string& name);
template <class V, class I>
Format format_of(const AnySparse<V, I>& m) {
  return static_cast<Format>(m.index());
}

/// True when n fits in index type I.
template <class I>
constexpr bool fits_index(int64_t n) {
  return n >= 0 && uint64_t(n) <= uint64_t(std::numeric_limits<I>::max());
}

}  // namespace tessera

// Explicit instantiation lists: every templated format/op is compiled for exactly these pairs.
#define TSR_FOR_EACH_INDEX(X, V) X(V, int32_t) X(V, int64_t)
#define TSR_FOR_EACH_STORAGE_TYPE(X) \
  TSR_FOR_EACH_INDEX(X, float) TSR_FOR_EACH_INDEX(X, double) TSR_FOR_EACH_INDEX(X, ::tessera::bf16) \
  TSR_FOR_EACH_INDEX(X, ::tessera::f16)
/// Value types the compute ops take (accumulation is f32; double is the reference type).
#define TSR_FOR_EACH_COMPUTE_TYPE(X) \
  TSR_FOR_EACH_INDEX(X, float) TSR_FOR_EACH_INDEX(X, ::tessera::bf16) TSR_FOR_EACH_INDEX(X, ::tessera::f16)
