// Dense row-major matrices: DenseView (non-owning, trivially copyable) and DenseMatrix (owning).
// Element (r, c) lives at data[r * ld + c]; ld >= cols.
#pragma once

#include <cstdint>
#include <type_traits>

#include "core/buffer.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/random.h"

namespace tessera {

/// Blocks template argument deduction (C++20's std::type_identity_t): ops deduce the value
/// type from the sparse matrix, so a DenseView<T> converts to the DenseView<const T> they take.
template <class T>
struct NonDeduced {
  using type = T;
};
template <class T>
using non_deduced_t = typename NonDeduced<T>::type;

template <class T>
struct DenseView {
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t ld = 0;       // leading dimension (elements between row starts), >= cols
  T* data = nullptr;    // [rows * ld], row-major
  MemorySpace space = MemorySpace::host;

  T& operator()(int64_t r, int64_t c) const { return data[r * ld + c]; }
  T* row(int64_t r) const { return data + r * ld; }
  /// A read-only view of the same memory.
  template <class U = T, class = std::enable_if_t<!std::is_const_v<U>>>
  operator DenseView<const U>() const {
    return {rows, cols, ld, data, space};
  }
};

/// B row-major matrices of the same shape (k-means problems, attention heads): element (b, r, c)
/// at data[b * batch_stride + r * ld + c]; batch_stride >= rows * ld unless the batch is 1.
template <class T>
struct BatchedDenseView {
  int64_t batch = 0;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t ld = 0;            // elements between row starts, >= cols
  int64_t batch_stride = 0;  // elements between matrix starts
  T* data = nullptr;         // [batch * batch_stride]
  MemorySpace space = MemorySpace::host;

  /// Matrix b of the batch.
  DenseView<T> operator[](int64_t b) const { return {rows, cols, ld, data + b * batch_stride, space}; }
  template <class U = T, class = std::enable_if_t<!std::is_const_v<U>>>
  operator BatchedDenseView<const U>() const {
    return {batch, rows, cols, ld, batch_stride, data, space};
  }
};

/// A batch of one: the matrix itself.
template <class T>
BatchedDenseView<T> batch_of_one(const DenseView<T>& m) {
  return {1, m.rows, m.cols, m.ld, m.rows * m.ld, m.data, m.space};
}

/// B contiguous rows x cols matrices starting at data.
template <class T>
BatchedDenseView<T> contiguous_batch(T* data, int64_t batch, int64_t rows, int64_t cols,
                                     MemorySpace space = MemorySpace::host) {
  return {batch, rows, cols, cols, rows * cols, data, space};
}

/// Throws unless v is a well-formed view (non-negative sizes, ld >= cols, data unless empty).
template <class T>
void validate_dense(const DenseView<T>& v, const char* what) {
  TSR_CHECK(v.rows >= 0 && v.cols >= 0, what, ": negative shape ", v.rows, "x", v.cols);
  TSR_CHECK(v.ld >= v.cols, what, ": leading dimension ", v.ld, " is smaller than cols ", v.cols);
  TSR_CHECK(v.data != nullptr || v.rows == 0 || v.cols == 0, what, ": null data for a ", v.rows,
            "x", v.cols, " matrix");
}

/// Throws unless v is a well-formed batch (non-negative sizes, ld >= cols, matrices that do not
/// overlap, data unless empty).
template <class T>
void validate_batch(const BatchedDenseView<T>& v, const char* what) {
  TSR_CHECK(v.batch >= 0 && v.rows >= 0 && v.cols >= 0, what, ": negative shape [", v.batch, ", ",
            v.rows, ", ", v.cols, "]");
  TSR_CHECK(v.ld >= v.cols, what, ": leading dimension ", v.ld, " is smaller than cols ", v.cols);
  TSR_CHECK(v.batch <= 1 || v.batch_stride >= v.rows * v.ld, what, ": batch stride ", v.batch_stride,
            " is smaller than a matrix (", v.rows, " x ", v.ld, "): the matrices overlap");
  TSR_CHECK(v.data != nullptr || v.batch == 0 || v.rows == 0 || v.cols == 0, what,
            ": null data for a [", v.batch, ", ", v.rows, ", ", v.cols, "] batch");
}

template <class T>
class DenseMatrix {
 public:
  DenseMatrix() = default;
  DenseMatrix(int64_t rows, int64_t cols, MemorySpace space = MemorySpace::host)
      : rows_(rows), cols_(cols), data_(checked_size(rows, cols), space) {}
  /// Host matrix with every element set to fill.
  DenseMatrix(int64_t rows, int64_t cols, const T& fill)
      : rows_(rows), cols_(cols), data_(checked_size(rows, cols), fill) {}

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  MemorySpace space() const { return data_.space(); }
  T* data() { return data_.data(); }
  const T* data() const { return data_.data(); }
  Buffer<T>& buffer() { return data_; }
  const Buffer<T>& buffer() const { return data_; }
  T& operator()(int64_t r, int64_t c) { return data_[r * cols_ + c]; }
  const T& operator()(int64_t r, int64_t c) const { return data_[r * cols_ + c]; }

  DenseView<T> view() { return {rows_, cols_, cols_, data_.data(), data_.space()}; }
  DenseView<const T> view() const { return {rows_, cols_, cols_, data_.data(), data_.space()}; }
  DenseMatrix to(MemorySpace space) const {
    DenseMatrix out;
    out.rows_ = rows_;
    out.cols_ = cols_;
    out.data_ = data_.to(space);
    return out;
  }

 private:
  static size_t checked_size(int64_t rows, int64_t cols) {
    TSR_CHECK(rows >= 0 && cols >= 0, "dense matrix shape ", rows, "x", cols, " is negative");
    return size_t(rows) * size_t(cols);
  }
  int64_t rows_ = 0;
  int64_t cols_ = 0;
  Buffer<T> data_;
};

/// A host matrix with elements uniform in [lo, hi), deterministic by seed (inputs for checks and
/// benchmarks: never all zeros, which hide unwritten outputs).
template <class T>
DenseMatrix<T> uniform_dense(int64_t rows, int64_t cols, uint64_t seed, double lo = -1.0,
                             double hi = 1.0) {
  DenseMatrix<T> m(rows, cols);
  Rng rng(seed);
  for (int64_t i = 0; i < rows * cols; ++i) m.data()[i] = from_float<T>(rng.uniform(lo, hi));
  return m;
}

}  // namespace tessera
