// Random inputs of awkward shapes for tests: fresh per seed, never all zeros.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "core/dense.h"
#include "core/error.h"
#include "core/random.h"
#include "formats/sparse.h"

namespace tessera::testing {

struct RandomShape {
  int64_t rows = 0, cols = 0;
  double density = 0.05;
  double empty_row_fraction = 0.0;  // rows forced empty
  int64_t dense_row = -1;           // this row gets ~half of all columns (one huge row)
  bool sorted = true;               // columns sorted within rows
};

/// A random CSR (no duplicates; unsorted rows when !sorted) with values in [-1, 1) \ {0}.
template <class V, class I>
Csr<V, I> random_csr(const RandomShape& s, uint64_t seed) {
  Rng rng(seed);
  std::vector<I> indptr(size_t(s.rows) + 1, 0), indices;
  std::vector<V> values;
  std::vector<I> row;
  for (int64_t r = 0; r < s.rows; ++r) {
    row.clear();
    const bool empty = rng.uniform() < s.empty_row_fraction;
    const double p = (r == s.dense_row) ? 0.5 : s.density;
    if (!empty) {
      for (int64_t j = 0; j < s.cols; ++j) {
        if (rng.uniform() < p) row.push_back(I(j));
      }
    }
    if (!s.sorted) {
      for (size_t k = row.size(); k > 1; --k) std::swap(row[k - 1], row[rng.below(k)]);
    }
    for (I j : row) {
      indices.push_back(j);
      double v = rng.uniform(-1.0, 1.0);
      if (v == 0.0) v = 0.5;
      values.push_back(from_float<V>(v));
    }
    indptr[size_t(r) + 1] = I(indices.size());
  }
  return Csr<V, I>{s.rows, s.cols, Buffer<I>(indptr), Buffer<I>(indices), Buffer<V>(values)};
}

/// A random dense host matrix with values in [-1, 1).
template <class T>
DenseMatrix<T> random_dense(int64_t rows, int64_t cols, uint64_t seed) {
  return uniform_dense<T>(rows, cols, seed);
}

/// The shared data folder: $TESSERA_DATA when set (a GPU machine keeps its copy elsewhere), else
/// the build's default beside the checkout. Tests that need it skip when it is absent.
inline std::string shared_data_dir() {
  const char* env = std::getenv("TESSERA_DATA");
  return env && *env ? env : TESSERA_SHARED_DATA;
}

/// The what() of the tessera::Error that fn throws, or "(no error)".
inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

/// The awkward shapes every kernel is tested on.
inline std::vector<std::pair<std::string, RandomShape>> awkward_shapes() {
  return {
      {"empty_0x0", {0, 0, 0.1}},
      {"rows_no_cols_5x0", {5, 0, 0.1}},
      {"no_nnz_7x9", {7, 9, 0.0}},
      {"one_row_1x300", {1, 300, 0.2}},
      {"one_col_300x1", {300, 1, 0.3}},
      {"empty_rows_97x61", {97, 61, 0.08, 0.4}},
      {"dense_row_150x400", {150, 400, 0.01, 0.1, 17}},
      {"unsorted_64x64", {64, 64, 0.2, 0.0, -1, false}},
      {"rect_33x257", {33, 257, 0.05}},
      {"tall_513x31", {513, 31, 0.1, 0.2}},
  };
}

}  // namespace tessera::testing
