// Float64 dense references: the oracle every SpMM/SDDMM kernel (CPU and GPU) is tested against.
// Deliberately naive: a dense double matrix built entry by entry, products in double.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "core/dense.h"
#include "formats/convert.h"
#include "formats/sparse.h"

namespace tessera::reference {

/// Dense double copy of A (duplicates summed).
template <class V, class I>
std::vector<double> dense(const Csr<V, I>& a) {
  std::vector<double> d(size_t(a.rows * a.cols), 0.0);
  for (int64_t r = 0; r < a.rows; ++r) {
    for (I e = a.indptr[r]; e < a.indptr[r + 1]; ++e) {
      d[size_t(r * a.cols + a.indices[e])] += double(to_float(a.values[e]));
    }
  }
  return d;
}

/// C = alpha * A * B + beta * C0, all in double; B is [cols, F] row-major, C0 [rows, F] or empty.
template <class V, class I, class B>
std::vector<double> spmm(const Csr<V, I>& a, const DenseMatrix<B>& b, double alpha = 1.0,
                         double beta = 0.0, const DenseMatrix<float>* c0 = nullptr) {
  const int64_t F = b.cols();
  std::vector<double> c(size_t(a.rows * F), 0.0);
  for (int64_t r = 0; r < a.rows; ++r) {
    for (I e = a.indptr[r]; e < a.indptr[r + 1]; ++e) {
      const double v = double(to_float(a.values[e]));
      for (int64_t f = 0; f < F; ++f) {
        c[size_t(r * F + f)] += v * double(to_float(b(a.indices[e], f)));
      }
    }
  }
  for (int64_t i = 0; i < a.rows * F; ++i) {
    c[size_t(i)] *= alpha;
    if (beta != 0.0) c[size_t(i)] += beta * double(c0->data()[i]);
  }
  return c;
}

/// out[e] = <X[row(e)], Y[col(e)]> (times A's value when scale_by_a), in CSR entry order.
template <class V, class I, class X>
std::vector<double> sddmm(const Csr<V, I>& a, const DenseMatrix<X>& x, const DenseMatrix<X>& y,
                          bool scale_by_a = false) {
  std::vector<double> out(size_t(a.nnz()), 0.0);
  for (int64_t r = 0; r < a.rows; ++r) {
    for (I e = a.indptr[r]; e < a.indptr[r + 1]; ++e) {
      double d = 0.0;
      for (int64_t f = 0; f < x.cols(); ++f) {
        d += double(to_float(x(r, f))) * double(to_float(y(a.indices[e], f)));
      }
      out[size_t(e)] = scale_by_a ? d * double(to_float(a.values[e])) : d;
    }
  }
  return out;
}

/// The GNN aggregations of ops::SpmmReduce per row and feature: op "max" / "min" over the row's
/// products formed in f32 as the kernels form them (so the winner is exact), the first in row
/// order on ties, a NaN product winning; "mean" in double. An empty row gives 0 (and arg -1).
/// arg (max / min): the winning column, [rows, F].
template <class V, class I, class B>
std::vector<double> spmm_reduce(const Csr<V, I>& a, const DenseMatrix<B>& b, const std::string& op,
                                std::vector<int64_t>* arg = nullptr) {
  const int64_t F = b.cols();
  std::vector<double> c(size_t(a.rows * F), 0.0);
  if (arg) arg->assign(size_t(a.rows * F), -1);
  for (int64_t r = 0; r < a.rows; ++r) {
    const int64_t begin = a.indptr[r], end = a.indptr[r + 1];
    for (int64_t f = 0; f < F; ++f) {
      double sum = 0;
      float best = 0;
      int64_t who = -1;
      for (int64_t e = begin; e < end; ++e) {
        const float p = to_float(a.values[e]) * to_float(b(a.indices[e], f));
        sum += double(to_float(a.values[e])) * double(to_float(b(a.indices[e], f)));
        const bool wins = who < 0 || (std::isnan(p) && !std::isnan(best)) ||
                          (op == "max" ? p > best : p < best);
        if (wins) best = p, who = a.indices[e];
      }
      const size_t i = size_t(r * F + f);
      if (op == "mean") {
        c[i] = end > begin ? sum / double(end - begin) : 0.0;
      } else {
        c[i] = double(best);
        if (arg) (*arg)[i] = who;
      }
    }
  }
  return c;
}

/// ||got - want|| / max(||want||, tiny); NaN anywhere gives +inf.
template <class T>
double relative_error(const T* got, const std::vector<double>& want) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double g = double(to_float(got[i]));
    if (!std::isfinite(g)) return INFINITY;
    num += (g - want[i]) * (g - want[i]);
    den += want[i] * want[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

}  // namespace tessera::reference
