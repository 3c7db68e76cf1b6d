// Float64 k-means references: distances, the nearest centroid and the Lloyd update, computed
// naively in double from the f32-rounded inputs. The oracle for ops::kmeans on every backend.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/dense.h"
#include "ops/kmeans/kmeans.h"

namespace tessera::reference {

/// Row r of x in double, scaled to unit length for cosine.
template <class V>
std::vector<double> point64(const DenseView<const V>& x, int64_t r, ops::KmeansMetric metric) {
  std::vector<double> p(size_t(x.cols));
  double norm = 0;
  for (int64_t j = 0; j < x.cols; ++j)
    p[size_t(j)] = double(to_float(x(r, j))), norm += p[size_t(j)] * p[size_t(j)];
  if (metric == ops::KmeansMetric::cosine) {
    for (double& v : p) v /= std::sqrt(norm);
  }
  return p;
}

/// The metric's distance between a point and a centroid (both already scaled for cosine).
inline double distance64(const std::vector<double>& p, const float* c, ops::KmeansMetric metric) {
  double dot = 0, diff2 = 0;
  for (size_t j = 0; j < p.size(); ++j) {
    dot += p[j] * double(c[j]);
    diff2 += (p[j] - double(c[j])) * (p[j] - double(c[j]));
  }
  switch (metric) {
    case ops::KmeansMetric::l2:
      return diff2;
    case ops::KmeansMetric::cosine:
      return 1.0 - dot;
    case ops::KmeansMetric::inner_product:
      return -dot;
  }
  return 0;
}

/// Centroids [k, d] (row-major) normalised for cosine, as the library holds them.
inline std::vector<float> prepared_centroids(const float* c, int64_t k, int64_t d,
                                             ops::KmeansMetric metric) {
  std::vector<float> out(c, c + k * d);
  if (metric != ops::KmeansMetric::cosine) return out;
  for (int64_t j = 0; j < k; ++j) {
    double norm = 0;
    for (int64_t t = 0; t < d; ++t) norm += double(out[size_t(j * d + t)]) * out[size_t(j * d + t)];
    for (int64_t t = 0; t < d; ++t)
      out[size_t(j * d + t)] = float(out[size_t(j * d + t)] / std::sqrt(norm));
  }
  return out;
}

/// The relative error of a distance the GPU computes on tensor cores, as check_labels' rounding:
/// tf32 rounds both operands (2^-11 each), bf16/f16 the centroid (2^-9 / 2^-12); a difference of
/// two distances doubles it.
template <class V>
double tensor_core_rounding() {
  if constexpr (std::is_same_v<V, bf16>) return 0x1p-7;
  if constexpr (std::is_same_v<V, f16>) return 0x1p-10;
  return 0x1p-8;
}

/// How labels compare with the float64 nearest centroid (ties to the lower index).
struct LabelCheck {
  int64_t checked = 0;    // points compared
  int64_t near_ties = 0;  // other label, but its distance ties the nearest within f32 rounding
  int64_t failures = 0;   // other label, farther than rounding explains
  int64_t first_failure = -1;
};

/// Compares labels [n] of x's points with the float64 nearest of `centroids` [k, d] (as given;
/// normalised here for cosine), on every stride-th point. f32 rounding of
/// ||x||^2 - 2 x.c + ||c||^2 grows with the norms and the dimension; the tie allowance follows.
/// `rounding` replaces the f32 allowance (4e-7 * D) when positive: the relative error of a
/// distance computed in a coarser type (tensor-core inputs), times the same norm scale.
template <class V>
LabelCheck check_labels(const DenseView<const V>& x, const float* centroids, int64_t k,
                        ops::KmeansMetric metric, const int32_t* labels, int64_t stride = 1,
                        double rounding = 0) {
  const std::vector<float> c = prepared_centroids(centroids, k, x.cols, metric);
  LabelCheck out;
  std::vector<double> dist(static_cast<size_t>(k));
  for (int64_t i = 0; i < x.rows; i += stride) {
    ++out.checked;
    const std::vector<double> p = point64(x, i, metric);
    int64_t want = 0;
    for (int64_t j = 0; j < k; ++j) {
      dist[size_t(j)] = distance64(p, c.data() + j * x.cols, metric);
      if (dist[size_t(j)] < dist[size_t(want)]) want = j;
    }
    if (labels[i] == want) continue;
    if (labels[i] < 0 || labels[i] >= k) {  // not a centroid at all
      if (out.failures++ == 0) out.first_failure = i;
      continue;
    }
    double scale = 1;
    for (int64_t t = 0; t < x.cols; ++t) {
      const double cv = c[size_t(labels[i] * x.cols + t)];
      scale += p[size_t(t)] * p[size_t(t)] + cv * cv;
    }
    const double allowance = rounding > 0 ? rounding : 4e-7 * double(x.cols);
    if (dist[size_t(labels[i])] - dist[size_t(want)] <= allowance * scale) {
      ++out.near_ties;
    } else if (out.failures++ == 0) {
      out.first_failure = i;
    }
  }
  return out;
}

/// The Lloyd update in double: means (cosine: normalised sums) of each label's points; a cluster
/// without points keeps old[j].
template <class V>
std::vector<double> update64(const DenseView<const V>& x, const std::vector<int32_t>& labels,
                             int64_t k, const std::vector<float>& old, ops::KmeansMetric metric) {
  const int64_t d = x.cols;
  std::vector<double> sum(size_t(k * d), 0.0);
  std::vector<int64_t> count(size_t(k), 0);
  for (int64_t i = 0; i < x.rows; ++i) {
    const std::vector<double> p = point64(x, i, metric);
    ++count[size_t(labels[size_t(i)])];
    for (int64_t t = 0; t < d; ++t) sum[size_t(labels[size_t(i)] * d + t)] += p[size_t(t)];
  }
  for (int64_t j = 0; j < k; ++j) {
    double norm = 0;
    for (int64_t t = 0; t < d; ++t) norm += sum[size_t(j * d + t)] * sum[size_t(j * d + t)];
    for (int64_t t = 0; t < d; ++t) {
      double& v = sum[size_t(j * d + t)];
      if (count[size_t(j)] == 0) {
        v = old[size_t(j * d + t)];
      } else {
        v = metric == ops::KmeansMetric::cosine ? v / std::sqrt(norm)
                                                : v / double(count[size_t(j)]);
      }
    }
  }
  return sum;
}

}  // namespace tessera::reference
