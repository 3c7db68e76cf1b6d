// Format statistics: how much a format stores beyond the nonzeros, and how its pieces are filled.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "formats/sparse.h"

namespace tessera {

struct FormatStats {
  std::string format;
  int64_t rows = 0, cols = 0;
  int64_t nnz = 0;            // entries of the matrix
  int64_t stored = 0;         // value slots the format stores (nnz plus padding)
  double padding_ratio = 0;   // (stored - nnz) / stored, 0 when nothing is stored
  size_t bytes = 0;           // memory of the format's arrays
  /// Format-specific figures in display order: row-length summary, block fill, bucket occupancy.
  std::vector<std::pair<std::string, double>> details;
  /// Multi-line human-readable form.
  std::string to_string() const;
  /// JSON object text.
  std::string to_json() const;
};

template <class V, class I> FormatStats format_stats(const AnySparse<V, I>& m);

/// Row-length summary of a CSR matrix: min, max, mean, stddev, empty rows.
struct RowLengthStats {
  int64_t min = 0, max = 0, empty_rows = 0;
  double mean = 0, stddev = 0;
};
template <class V, class I> RowLengthStats row_length_stats(const CsrView<V, I>& csr);

}  // namespace tessera
