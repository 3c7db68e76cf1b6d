// File formats: Matrix Market (coordinate), SNAP-style edge lists, and .npy dense arrays.
// A malformed file throws tessera::Error naming the file, the line (or byte offset) and the reason;
// nothing partial is returned.
#pragma once

#include <string>

#include "core/dense.h"
#include "formats/sparse.h"

namespace tessera {

struct MatrixMarketHeader {
  std::string field;     // "real", "integer" or "pattern"
  std::string symmetry;  // "general" or "symmetric"
};

/// Reads a coordinate Matrix Market file. Symmetric files are expanded (each off-diagonal entry
/// is mirrored); pattern entries get value 1. Entries keep file order; duplicates are kept
/// (canonicalize() sums them).
/// @throw tessera::Error on a bad banner or size line, a truncated file, an index of 0 or past
/// the size, a negative or non-numeric field, a wrong entry count, sizes that overflow I, or a
/// symmetric file holding both (i, j) and (j, i) (mirroring would add each onto the other).
template <class V, class I>
Coo<V, I> read_matrix_market(const std::string& path, MatrixMarketHeader* header = nullptr);

/// The file a writer of `path` replaces: `path` itself, or the target of a symbolic link. Every
/// writer here writes a temp file beside it and renames it over it, so a failed write leaves the
/// old file whole. Call it to check several outputs before writing any of them.
/// @throw tessera::Error when the path is empty, names a directory, device, FIFO or socket, or lies
/// in a directory that does not exist or cannot be written.
std::string output_destination(const std::string& path, const char* who);

/// Writes a general real coordinate Matrix Market file (1-based indices, full float precision).
template <class V, class I>
void write_matrix_market(const std::string& path, const Csr<V, I>& m);

struct EdgeListOptions {
  bool symmetrize = false;   // add (v, u) for every (u, v) with u != v
  bool compact_ids = false;  // renumber the ids that occur to 0..n-1 in order of first appearance
  int64_t num_nodes = -1;    // matrix size; -1: largest id + 1 (or the number of distinct ids)
};

/// Reads a SNAP-style edge list: lines "u v" or "u v w" (whitespace separated), '#' or '%'
/// comment lines, 0-based non-negative ids. Edges without a weight get value 1.
template <class V, class I>
Coo<V, I> read_edge_list(const std::string& path, const EdgeListOptions& options = {});

/// Reads a matrix file of either kind, reading it once (so a pipe works): Matrix Market when the
/// name ends in .mtx (any case) or the bytes start with the %%MatrixMarket banner, otherwise an
/// edge list with default options.
template <class V, class I>
Coo<V, I> read_sparse_file(const std::string& path);

/// Reads a 1-D or 2-D C-order little-endian .npy array (f4, f8, f2, i4, i8, u1 on disk),
/// converting to T. A 1-D array of n elements becomes an n x 1 matrix. Bytes past the array are
/// an error (a file holding more than one array is not read as its first).
template <class T>
DenseMatrix<T> read_npy(const std::string& path);

/// Writes a 2-D .npy array (f4 for float, f8 for double, f2 for f16, i4/i8 for integers;
/// bf16 has no .npy type and is written as f4).
template <class T>
void write_npy(const std::string& path, const DenseView<const T>& m);

/// Reads a .fvecs (T = float) or .ivecs (T = int32_t) file: records of a little-endian int32
/// dimension d followed by d 4-byte values, every record the same d. Returns [records, d].
/// @throw tessera::Error naming the path, the record and its byte offset for a truncated record,
/// a dimension that is not positive or differs from the first record's, or (fvecs) NaN/Inf.
template <class T>
DenseMatrix<T> read_vecs(const std::string& path);

}  // namespace tessera
