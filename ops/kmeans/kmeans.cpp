// ops::kmeans on the CPU: validation, initialisation, the Lloyd loop, the blocked assignment and
// the sort-inverse update. Invariants: nothing throws inside an OpenMP region (inputs are
// checked before); every reduction runs in a fixed order, so results do not depend on the
// thread count.
#include "ops/kmeans/kmeans.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <numeric>
#include <unordered_map>
#include <type_traits>

#include "core/config.h"
#include "core/device.h"
#include "core/error.h"
#include "core/random.h"
#include "ops/cpu/kernels.h"
#include "ops/kmeans/kmeans_cpu.h"
#if TESSERA_WITH_CUDA
#include "ops/kmeans/kmeans_cuda.h"
#endif

namespace tessera::ops {

namespace {

// a.b in f32 with eight partial sums: a fixed order (the same bits on every run) that the
// compiler can vectorise.
float dot_fixed_order(const float* a, const float* b, int64_t d) {
  float part[8] = {};
  int64_t t = 0;
  for (; t + 8 <= d; t += 8) {
    for (int u = 0; u < 8; ++u) part[u] += a[t + u] * b[t + u];
  }
  for (; t < d; ++t) part[t % 8] += a[t] * b[t];
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

}  // namespace

namespace kmeans_cpu {

void argmin_block_portable(const float* xb, int64_t n, const CentroidTable& c, bool l2,
                           int32_t* best, float* best_key) {
  for (int64_t i = 0; i < n; ++i) {
    const float* x = xb + i * c.dim;
    float bk = INFINITY;
    int32_t bi = 0;
    for (int64_t j = 0; j < c.k; ++j) {
      const float dot = dot_fixed_order(x, c.data + j * c.dim, c.dim);
      const float key = l2 ? c.sq_norms[j] - 2.0f * dot : -dot;
      if (key < bk) bk = key, bi = int32_t(j);
    }
    best[i] = bi;
    best_key[i] = bk;
  }
}

bool gemm_kernel_usable() {
#ifdef TSR_KMEANS_GEMM_V3
  return cpu::cpu_has_x86_64_v3();
#else
  return true;
#endif
}

}  // namespace kmeans_cpu

namespace {

using kmeans_cpu::CentroidTable;
using kmeans_cpu::kCentroidTile;
using kmeans_cpu::kPointBlock;

int thread_count(int requested) { return requested > 0 ? requested : omp_get_max_threads(); }

// Row r of x as f32 into out[0, d), scaled by `scale` (1, or 1/||x|| for cosine).
template <class V>
void load_row(const DenseView<const V>& x, int64_t r, float scale, float* out) {
  const V* row = x.row(r);
  for (int64_t j = 0; j < x.cols; ++j) out[j] = to_float(row[j]) * scale;
}

// The centroids with their squared norms, contiguous.
struct Centroids {
  std::vector<float> data;      // [k, d]
  std::vector<float> sq_norms;  // [k]
  int64_t k = 0, d = 0;

  void refresh_norms() {
    sq_norms.assign(static_cast<size_t>(k), 0.0f);
    for (int64_t j = 0; j < k; ++j) {
      double s = 0;
      for (int64_t t = 0; t < d; ++t)
        s += double(data[size_t(j * d + t)]) * data[size_t(j * d + t)];
      sq_norms[size_t(j)] = float(s);
    }
  }
  CentroidTable table() const { return {data.data(), sq_norms.data(), k, d}; }
};

// Squared Euclidean distance in f32 with eight partial sums (a fixed order that vectorises);
// relative error ~ d * 2^-24, ample for D^2 sampling.
float squared_distance(const float* a, const float* b, int64_t d) {
  float part[8] = {};
  int64_t t = 0;
  for (; t + 8 <= d; t += 8) {
    for (int u = 0; u < 8; ++u) {
      const float diff = a[t + u] - b[t + u];
      part[u] += diff * diff;
    }
  }
  for (; t < d; ++t) part[t % 8] += (a[t] - b[t]) * (a[t] - b[t]);
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

// One problem of the batch: its points, and 1/||x|| per point under the cosine metric.
template <class V>
struct ProblemData {
  DenseView<const V> x;
  const float* inv_norms = nullptr;  // [n] (cosine), else null
  float scale(int64_t r) const { return inv_norms ? inv_norms[r] : 1.0f; }
};

// Point i as f32: unscaled f32 points are read in place, others converted into buf.
template <class V>
const float* point_f32(const ProblemData<V>& p, int64_t i, float* buf) {
  if constexpr (std::is_same_v<V, float>) {
    if (!p.inv_norms) return p.x.row(i);
  }
  load_row(p.x, i, p.scale(i), buf);
  return buf;
}

// Labels, distances and the inertia of one problem against c. Blocks of kPointBlock points are
// loaded as f32 and matched against every centroid; block b's inertia lands in partial[b] and the
// blocks are summed in order.
template <class V>
double assign_problem(const ProblemData<V>& p, const Centroids& c, KmeansMetric metric,
                      int32_t* labels, float* distances, int threads) {
  const int64_t n = p.x.rows, d = p.x.cols;
  const int64_t blocks = (n + kPointBlock - 1) / kPointBlock;
  std::vector<double> partial(static_cast<size_t>(blocks), 0.0);
  const bool gemm = kmeans_cpu::gemm_kernel_usable();
  const bool l2 = metric == KmeansMetric::l2;
  const CentroidTable table = c.table();
#pragma omp parallel num_threads(threads) if (threads > 1 && blocks > 1)
  {
    std::vector<float> xb(static_cast<size_t>(kPointBlock * d)),
        key(static_cast<size_t>(kPointBlock)), x_sq(static_cast<size_t>(kPointBlock));
    std::vector<float> scratch(gemm ? size_t(kPointBlock * kCentroidTile) : 0);
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t r0 = b * kPointBlock, m = std::min(kPointBlock, n - r0);
      for (int64_t i = 0; i < m; ++i) {
        float* row = xb.data() + i * d;
        load_row(p.x, r0 + i, p.scale(r0 + i), row);
        x_sq[size_t(i)] = dot_fixed_order(row, row, d);
      }
      if (gemm) {
        kmeans_cpu::argmin_block_gemm(xb.data(), m, table, l2, labels + r0, key.data(),
                                      scratch.data());
      } else {
        kmeans_cpu::argmin_block_portable(xb.data(), m, table, l2, labels + r0, key.data());
      }
      double sum = 0;
      for (int64_t i = 0; i < m; ++i) {
        float dist = 0;
        switch (metric) {
          case KmeansMetric::l2:
            dist = std::max(0.0f, x_sq[size_t(i)] + key[size_t(i)]);
            break;
          case KmeansMetric::cosine:
            dist = std::max(0.0f, 1.0f + key[size_t(i)]);
            break;
          case KmeansMetric::inner_product:
            dist = key[size_t(i)];
            break;
        }
        if (distances) distances[r0 + i] = dist;
        sum += dist;
      }
      partial[size_t(b)] = sum;
    }
  }
  return std::accumulate(partial.begin(), partial.end(), 0.0);
}

// Sort-inverse update: labels counting-sorted into per-cluster segments (points in ascending
// order within each), each segment summed in that order (runs of f32 partial sums into f64). Empty
// clusters keep their centroid or move to the farthest points, per the policy. counts: [k].
template <class V>
void update_problem(const ProblemData<V>& p, const int32_t* labels, const float* distances,
                    KmeansMetric metric, EmptyClusters policy, Centroids& c, int64_t* counts,
                    int threads) {
  const int64_t n = p.x.rows, d = p.x.cols, k = c.k;
  std::vector<int64_t> start(static_cast<size_t>(k) + 1, 0);
  for (int64_t i = 0; i < n; ++i) ++start[size_t(labels[i]) + 1];
  for (int64_t j = 0; j < k; ++j) counts[j] = start[size_t(j) + 1];
  std::partial_sum(start.begin(), start.end(), start.begin());
  std::vector<int64_t> order(static_cast<size_t>(n)), next(start.begin(), start.end() - 1);
  for (int64_t i = 0; i < n; ++i) order[size_t(next[size_t(labels[i])]++)] = i;
#pragma omp parallel num_threads(threads) if (threads > 1 && k > 1)
  {
    std::vector<double> acc(static_cast<size_t>(d));
    std::vector<float> part(static_cast<size_t>(d)), row(static_cast<size_t>(d));
#pragma omp for schedule(dynamic, 4)
    for (int64_t j = 0; j < k; ++j) {
      const int64_t begin = start[size_t(j)], end = start[size_t(j) + 1];
      if (begin == end) continue;  // empty: handled below
      std::fill(acc.begin(), acc.end(), 0.0);
      // Runs of kSumRun rows summed in f32 (vector-wide), each run added into f64: the error
      // stays near kSumRun * 2^-24 relative however large the cluster.
      constexpr int64_t kSumRun = 64;
      for (int64_t s0 = begin; s0 < end; s0 += kSumRun) {
        std::fill(part.begin(), part.end(), 0.0f);
        for (int64_t s = s0; s < std::min(end, s0 + kSumRun); ++s) {
          const float* src = point_f32(p, order[size_t(s)], row.data());
          for (int64_t t = 0; t < d; ++t) part[size_t(t)] += src[t];
        }
        for (int64_t t = 0; t < d; ++t) acc[size_t(t)] += part[size_t(t)];
      }
      float* out = c.data.data() + j * d;
      if (metric == KmeansMetric::cosine) {
        double norm = 0;
        for (int64_t t = 0; t < d; ++t) norm += acc[size_t(t)] * acc[size_t(t)];
        norm = std::sqrt(norm);
        if (norm > 0) {  // points that cancel out leave the centroid where it was
          for (int64_t t = 0; t < d; ++t) out[t] = float(acc[size_t(t)] / norm);
        }
      } else {
        const double inv = 1.0 / double(end - begin);
        for (int64_t t = 0; t < d; ++t) out[t] = float(acc[size_t(t)] * inv);
      }
    }
  }
  if (policy == EmptyClusters::reseed_farthest) {
    std::vector<int64_t> empty;
    for (int64_t j = 0; j < k; ++j) {
      if (counts[j] == 0) empty.push_back(j);
    }
    if (!empty.empty()) {
      // The farthest points from their own centroids (ties: the lower index), one per empty
      // cluster.
      std::vector<int64_t> by_distance(static_cast<size_t>(n));
      std::iota(by_distance.begin(), by_distance.end(), 0);
      const size_t take = std::min(empty.size(), size_t(n));
      std::partial_sort(by_distance.begin(), by_distance.begin() + take, by_distance.end(),
                        [&](int64_t a, int64_t b) {
                          return distances[a] != distances[b] ? distances[a] > distances[b] : a < b;
                        });
      for (size_t e = 0; e < take; ++e) {
        load_row(p.x, by_distance[e], p.scale(by_distance[e]), c.data.data() + empty[e] * d);
      }
    }
  }
  c.refresh_norms();
}

// k-means++: each next seed is drawn with probability proportional to its squared distance to
// the nearest seed so far (on the points as assigned: unit vectors for cosine). Exact, but a pass
// reads a point only when the new seed can be nearer than its current one: with a = the point's
// nearest seed, d(x, new) >= d(new, a) - d(x, a), so d(new, a)^2 >= 4 d(x, a)^2 rules it out. Most
// passes then touch 12 bytes a point instead of the whole row. Writes the seeds to seeds [k, d].
// weights (null: 1 each) make point i count weights[i] times: k-means|| reduces its candidates
// this way.
template <class V>
void plus_plus_seeds(const ProblemData<V>& p, int64_t k, Rng& rng, int threads, float* seeds,
                     const int32_t* weights = nullptr) {
  const int64_t n = p.x.rows, d = p.x.cols;
  constexpr int64_t kChunk = 4096;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> nearest(static_cast<size_t>(n),
                              INFINITY);                   // squared distance to the nearest seed
  std::vector<int32_t> owner(static_cast<size_t>(n), -1);  // that seed
  std::vector<double> chunk_sum(static_cast<size_t>(chunks)), between(static_cast<size_t>(k));
  std::vector<char> taken(static_cast<size_t>(n), 0);
  auto weight = [&](int64_t i) { return weights ? double(weights[i]) : 1.0; };
  int64_t next = 0;
  if (weights) {  // the first seed in proportion to the weights
    double all = 0;
    for (int64_t i = 0; i < n; ++i) all += weight(i);
    double target = rng.uniform() * all;
    for (next = 0; next + 1 < n && (weight(next) <= 0 || (target -= weight(next)) >= 0); ++next) {
    }
  } else {
    next = int64_t(rng.below(uint64_t(n)));
  }
  for (int64_t j = 0; j < k; ++j) {
    taken[size_t(next)] = 1;
    float* seed = seeds + j * d;
    load_row(p.x, next, p.scale(next), seed);
    if (j + 1 == k) break;
    // Squared distances from the new seed to the older ones: O(j d) a seed, O(k^2 d) in all, so
    // split over the threads once there is enough of it (each entry is computed the same way
    // either way: the same bits).
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && j * d >= (1 << 16))
    for (int64_t s = 0; s < j; ++s) between[size_t(s)] = squared_distance(seed, seeds + s * d, d);
#pragma omp parallel num_threads(threads) if (threads > 1 && chunks > 1)
    {
      std::vector<float> row(static_cast<size_t>(d));
#pragma omp for schedule(static)
      for (int64_t ch = 0; ch < chunks; ++ch) {
        double sum = 0;
        for (int64_t i = ch * kChunk; i < std::min(n, (ch + 1) * kChunk); ++i) {
          const int32_t a = owner[size_t(i)];
          if (a < 0 || between[size_t(a)] < 4 * nearest[size_t(i)]) {
            const double dist = squared_distance(point_f32(p, i, row.data()), seed, d);
            if (dist < nearest[size_t(i)]) nearest[size_t(i)] = dist, owner[size_t(i)] = int32_t(j);
          }
          sum += taken[size_t(i)] ? 0.0 : weight(i) * nearest[size_t(i)];
        }
        chunk_sum[size_t(ch)] = sum;
      }
    }
    double total = 0;
    for (double s : chunk_sum) total += s;
    if (total > 0) {
      // The chunk holding the target, then the point within it (fixed order: deterministic).
      double target = rng.uniform() * total;
      int64_t ch = 0;
      while (ch + 1 < chunks && target >= chunk_sum[size_t(ch)]) target -= chunk_sum[size_t(ch++)];
      next = -1;
      for (int64_t i = ch * kChunk; i < std::min(n, (ch + 1) * kChunk); ++i) {
        if (taken[size_t(i)] || nearest[size_t(i)] <= 0 || weight(i) <= 0) continue;
        next = i;
        target -= weight(i) * nearest[size_t(i)];
        if (target < 0) break;
      }
      if (next < 0) {  // rounding left the chunk without weight: the last weighted point anywhere
        for (int64_t i = n - 1; next < 0; --i) {
          if (!taken[size_t(i)] && nearest[size_t(i)] > 0 && weight(i) > 0) next = i;
        }
      }
    } else {  // every remaining point sits on a seed: any untaken one
      int64_t skip = int64_t(rng.below(uint64_t(n - j - 1)));
      for (next = 0;; ++next) {
        if (!taken[size_t(next)] && skip-- == 0) break;
      }
    }
  }
}

// k distinct point indices in [0, n): the first k draws of a Fisher-Yates shuffle, the
// displaced entries kept in a map (O(k) memory; the same indices as shuffling an iota array).
std::vector<int64_t> random_seed_rows(int64_t n, int64_t k, Rng& rng) {
  std::unordered_map<int64_t, int64_t> moved;
  auto at = [&](int64_t i) {
    const auto it = moved.find(i);
    return it == moved.end() ? i : it->second;
  };
  std::vector<int64_t> rows(static_cast<size_t>(k));
  for (int64_t j = 0; j < k; ++j) {
    const int64_t r = j + int64_t(rng.below(uint64_t(n - j)));
    const int64_t vj = at(j), vr = at(r);
    moved[j] = vr;
    moved[r] = vj;
    rows[size_t(j)] = vr;
  }
  return rows;
}

// Seeds: k distinct points (random), or D^2 sampling (k-means++) on the points as assigned
// (unit vectors for cosine). Deterministic for a seed.
template <class V>
void seed_problem(const ProblemData<V>& p, int64_t k, KmeansInit init, uint64_t seed, Centroids& c,
                  int threads) {
  const int64_t n = p.x.rows, d = p.x.cols;
  Rng rng(seed);
  c.k = k;
  c.d = d;
  c.data.resize(static_cast<size_t>(k * d));
  if (init == KmeansInit::random) {
    const std::vector<int64_t> rows = random_seed_rows(n, k, rng);
    for (int64_t j = 0; j < k; ++j) {
      load_row(p.x, rows[size_t(j)], p.scale(rows[size_t(j)]), c.data.data() + j * d);
    }
  } else {
    plus_plus_seeds(p, k, rng, threads, c.data.data());
  }
  c.refresh_norms();
}

// Checks x and returns 1/||x|| per point for cosine (empty otherwise). Errors name the problem,
// the row and the column.
template <class V>
std::vector<float> check_points(const BatchedDenseView<const V>& x, KmeansMetric metric,
                                const char* what) {
  validate_batch(x, what);
  TSR_CHECK(x.space == MemorySpace::host, what, ": internal: a device batch reached the CPU path");
  TSR_CHECK(x.rows <= int64_t(INT32_MAX), what, ": ", x.rows,
            " points per problem exceed the int32 labels (at most ", INT32_MAX, ")");
  const int64_t total = x.batch * x.rows;
  int64_t first_bad = total;  // the smallest (problem, row) holding NaN or Inf
#pragma omp parallel for reduction(min : first_bad) schedule(static)
  for (int64_t r = 0; r < total; ++r) {
    const V* row = x[r / std::max<int64_t>(x.rows, 1)].row(r % std::max<int64_t>(x.rows, 1));
    for (int64_t j = 0; j < x.cols; ++j) {
      if (!std::isfinite(to_float(row[j]))) {
        first_bad = std::min(first_bad, r);
        break;
      }
    }
  }
  if (first_bad < total) {
    const int64_t b = first_bad / x.rows, i = first_bad % x.rows;
    const V* row = x[b].row(i);
    int64_t j = 0;
    while (std::isfinite(to_float(row[j]))) ++j;
    TSR_FAIL(what, ": X[", b, "][", i, "][", j, "] is ", to_float(row[j]),
             "; points must be finite");
  }
  std::vector<float> inv_norms;
  if (metric == KmeansMetric::cosine) {
    inv_norms.resize(static_cast<size_t>(total));
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < total; ++r) {
      const V* row = x[r / x.rows].row(r % x.rows);
      double s = 0;
      for (int64_t j = 0; j < x.cols; ++j) s += double(to_float(row[j])) * to_float(row[j]);
      inv_norms[size_t(r)] = s > 0 ? float(1.0 / std::sqrt(s)) : 0.0f;
    }
    for (int64_t r = 0; r < total; ++r) {
      TSR_CHECK(inv_norms[size_t(r)] > 0, what, ": X[", r / x.rows, "][", r % x.rows,
                "] is the zero vector, which has no direction under the cosine metric");
    }
  }
  return inv_norms;
}

// Centroids [B, k, d] given by the caller, checked, as problem b's table (unit length for cosine).
Centroids given_centroids(const BatchedDenseView<const float>& g, int64_t b, KmeansMetric metric) {
  Centroids c;
  c.k = g.rows;
  c.d = g.cols;
  c.data.resize(static_cast<size_t>(c.k * c.d));
  for (int64_t j = 0; j < c.k; ++j) {
    const float* row = g[b].row(j);
    double s = 0;
    for (int64_t t = 0; t < c.d; ++t) {
      TSR_CHECK(std::isfinite(row[t]), "kmeans: centroid [", b, "][", j, "][", t, "] is ", row[t],
                "; centroids must be finite");
      s += double(row[t]) * row[t];
    }
    const double scale = metric == KmeansMetric::cosine ? 1.0 / std::sqrt(s) : 1.0;
    TSR_CHECK(metric != KmeansMetric::cosine || s > 0, "kmeans: centroid [", b, "][", j,
              "] is the zero vector, which has no direction under the cosine metric");
    for (int64_t t = 0; t < c.d; ++t) c.data[size_t(j * c.d + t)] = float(row[t] * scale);
  }
  c.refresh_norms();
  return c;
}

void check_centroid_shape(const BatchedDenseView<const float>& g, int64_t batch, int64_t k,
                          int64_t d, const char* what) {
  validate_batch(g, what);
  TSR_CHECK(g.batch == batch && g.rows == k && g.cols == d, what, ": centroids are [", g.batch,
            ", ", g.rows, ", ", g.cols, "] but the problem needs [", batch, ", ", k, ", ", d, "]");
}

// Problem b's seed: the caller's seed mixed with b, so problems draw independent streams.
uint64_t problem_seed(uint64_t seed, int64_t b) {
  return seed ^ (uint64_t(b) * 0x9e3779b97f4a7c15ull);
}

// A batch anywhere as a host view: itself, or a copy of its span in storage.
template <class T>
BatchedDenseView<const T> on_host(const BatchedDenseView<const T>& v, Buffer<T>& storage) {
  if (v.space == MemorySpace::host || v.batch * v.rows * v.cols == 0) return v;
  const int64_t span = (v.batch - 1) * v.batch_stride + (v.rows - 1) * v.ld + v.cols;
  storage = Buffer<T>(static_cast<size_t>(span));
  device::copy(storage.data(), MemorySpace::host, v.data, MemorySpace::device,
               sizeof(T) * static_cast<size_t>(span));
  return {v.batch, v.rows, v.cols, v.ld, v.batch_stride, storage.data(), MemorySpace::host};
}

// The option and shape checks every backend makes.
template <class V>
void check_options(const BatchedDenseView<const V>& x, int64_t k, const KmeansOptions& o) {
  TSR_CHECK(k > 0, "kmeans: k = ", k, " must be positive");
  TSR_CHECK(k <= x.rows, "kmeans: k = ", k, " exceeds the ", x.rows, " points of each problem");
  TSR_CHECK(x.cols > 0, "kmeans: points have dimension 0");
  TSR_CHECK(o.max_iterations >= 0, "kmeans: max_iterations = ", o.max_iterations, " is negative");
  TSR_CHECK(o.tolerance >= 0 && std::isfinite(o.tolerance), "kmeans: tolerance = ", o.tolerance,
            " must be finite and non-negative");
}

// Runs fn(b, inner_threads) for every problem: across problems when there are enough of them
// to keep the threads busy, else one problem at a time with all threads inside. The first
// exception (a failed allocation) is rethrown after the region.
template <class Fn>
void for_each_problem(int64_t batch, int threads, Fn&& fn) {
  if (batch >= threads && threads > 1) {
    std::exception_ptr error;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int64_t b = 0; b < batch; ++b) {
      try {
        fn(b, 1);
      } catch (...) {
#pragma omp critical(tessera_kmeans_error)
        if (!error) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
  } else {
    for (int64_t b = 0; b < batch; ++b) fn(b, threads);
  }
}

}  // namespace

namespace {

// The GPU fit: options and initial centroids prepared here, the iterations in kmeans_cuda.cu.
// Random seeds are the same points the CPU path picks for the same seed; k-means++ becomes
// k-means|| (kParallelRounds rounds drawing kParallelOversampling * K points each on the device,
// then weighted k-means++ over those candidates on the host).
constexpr int kParallelRounds = 5;
constexpr double kParallelOversampling = 2.0;
template <class V>
void kmeans_on_device(Context& ctx, BatchedDenseView<const V> x, int64_t k, const KmeansOptions& o,
                      KmeansResult& out) {
  validate_batch(x, "kmeans");
  check_options(x, k, o);
#if TESSERA_WITH_CUDA
  kmeans_cuda::check_max_dimension<V>(x.cols, "kmeans");
  const int64_t batch = x.batch, n = x.rows, d = x.cols;
  kmeans_cuda::InitialCentroids init;
  std::vector<int64_t> rows;
  std::vector<float> seeds;
  if (o.init == KmeansInit::given) {
    check_centroid_shape(o.initial_centroids, batch, k, d, "kmeans: initial_centroids");
    init.given = o.initial_centroids;
  } else if (o.init == KmeansInit::random) {
    for (int64_t b = 0; b < batch; ++b) {
      Rng rng(problem_seed(o.seed, b));
      const std::vector<int64_t> r = random_seed_rows(n, k, rng);
      rows.insert(rows.end(), r.begin(), r.end());
    }
    init.rows = rows.data();
  } else {  // k-means||: candidates drawn on the device, reduced by weighted k-means++ here
    std::vector<uint64_t> draw(static_cast<size_t>(batch));
    for (int64_t b = 0; b < batch; ++b) draw[size_t(b)] = Rng(problem_seed(o.seed, b)).next();
    const std::vector<kmeans_cuda::Candidates> cand = kmeans_cuda::parallel_candidates(
        ctx, x, k, o.metric, draw, kParallelRounds, kParallelOversampling);
    seeds.resize(static_cast<size_t>(batch * k * d));
    for_each_problem(batch, thread_count(o.threads), [&](int64_t b, int threads) {
      const kmeans_cuda::Candidates& c = cand[size_t(b)];
      const int64_t m = int64_t(c.rows.size());
      const ProblemData<float> p{DenseView<const float>{m, d, d, c.vectors.data()}, nullptr};
      Rng rng(problem_seed(o.seed, b) ^ 0x5eedull);
      plus_plus_seeds(p, k, rng, threads, seeds.data() + b * k * d, c.weights.data());
    });
    init.given = contiguous_batch<const float>(seeds.data(), batch, k, d);
  }
  kmeans_cuda::fit(ctx, x, k, o, init, out);
#else
  (void)ctx;
  (void)out;
  TSR_FAIL("kmeans: X is in device memory, but this build has no CUDA");
#endif
}

// Host X fitted on the GPU chunk by chunk (options.gpu_streaming): initial centroids prepared
// on the host (random rows or k-means++ from X, or the caller's), the passes in kmeans_cuda.cu.
template <class V>
void kmeans_streamed(Context& ctx, BatchedDenseView<const V> x, int64_t k, const KmeansOptions& o,
                     KmeansResult& out) {
  validate_batch(x, "kmeans");
  check_options(x, k, o);
  TSR_CHECK(o.stream_chunk_points >= 0, "kmeans: stream_chunk_points = ", o.stream_chunk_points,
            " is negative");
#if TESSERA_WITH_CUDA
  TSR_CHECK(device::available(), "kmeans: gpu_streaming needs a CUDA device, and none is visible");
  kmeans_cuda::check_max_dimension<V>(x.cols, "kmeans");  // before the host seeding pass over X
  std::vector<float> seeds;
  BatchedDenseView<const float> initial = o.initial_centroids;
  if (o.init == KmeansInit::given) {
    check_centroid_shape(o.initial_centroids, x.batch, k, x.cols, "kmeans: initial_centroids");
  } else {
    const std::vector<float> inv_norms = check_points(x, o.metric, "kmeans");
    seeds.resize(static_cast<size_t>(x.batch * k * x.cols));
    for_each_problem(x.batch, thread_count(o.threads), [&](int64_t b, int threads) {
      const ProblemData<V> p{x[b], inv_norms.empty() ? nullptr : inv_norms.data() + b * x.rows};
      Centroids c;
      seed_problem(p, k, o.init, problem_seed(o.seed, b), c, threads);
      std::copy(c.data.begin(), c.data.end(), seeds.begin() + b * k * x.cols);
    });
    initial = contiguous_batch<const float>(seeds.data(), x.batch, k, x.cols);
  }
  kmeans_cuda::fit_streamed(ctx, x, k, o, initial, out);
#else
  (void)ctx;
  (void)out;
  TSR_FAIL("kmeans: gpu_streaming needs a build with CUDA");
#endif
}

}  // namespace

template <class V>
KmeansResult kmeans(Context& ctx, BatchedDenseView<const V> x, int64_t k, const KmeansOptions& o) {
  if (x.space == MemorySpace::device || o.gpu_streaming) {
    KmeansResult r;
    if (x.space == MemorySpace::device) {
      kmeans_on_device(ctx, x, k, o, r);
    } else {
      kmeans_streamed(ctx, x, k, o, r);
    }
    return r;
  }
  const std::vector<float> inv_norms = check_points(x, o.metric, "kmeans");
  check_options(x, k, o);
  // Given centroids may sit on the device (a KMeans fitted there): read through a host copy.
  Buffer<float> given_storage;
  BatchedDenseView<const float> given;
  if (o.init == KmeansInit::given) {
    check_centroid_shape(o.initial_centroids, x.batch, k, x.cols, "kmeans: initial_centroids");
    given = on_host(o.initial_centroids, given_storage);
  }
  const int64_t n = x.rows, d = x.cols;
  KmeansResult r;
  r.batch = x.batch;
  r.k = k;
  r.dim = d;
  r.points = n;
  r.centroids = Buffer<float>(static_cast<size_t>(x.batch * k * d));
  r.labels = Buffer<int32_t>(static_cast<size_t>(x.batch * n));
  r.counts = Buffer<int64_t>(static_cast<size_t>(x.batch * k));
  r.inertia.assign(static_cast<size_t>(x.batch), 0.0);
  r.inertia_history.assign(static_cast<size_t>(x.batch), {});
  std::vector<int> iterations(static_cast<size_t>(x.batch), 0);
  // Given centroids are checked here, outside the parallel region.
  std::vector<Centroids> start;
  if (o.init == KmeansInit::given) {
    for (int64_t b = 0; b < x.batch; ++b)
      start.push_back(given_centroids(given, b, o.metric));
  }
  for_each_problem(x.batch, thread_count(o.threads), [&](int64_t b, int threads) {
    const ProblemData<V> p{x[b], inv_norms.empty() ? nullptr : inv_norms.data() + b * n};
    Centroids c;
    if (o.init == KmeansInit::given) {
      c = std::move(start[size_t(b)]);
    } else {
      seed_problem(p, k, o.init, problem_seed(o.seed, b), c, threads);
    }
    int32_t* labels = r.labels.data() + b * n;
    int64_t* counts = r.counts.data() + b * k;
    std::vector<float> distances(static_cast<size_t>(n));
    std::vector<int32_t> previous(static_cast<size_t>(n));
    std::vector<double>& history = r.inertia_history[size_t(b)];
    double inertia = assign_problem(p, c, o.metric, labels, distances.data(), threads);
    history.push_back(inertia);
    for (int it = 0; it < o.max_iterations; ++it) {
      std::copy(labels, labels + n, previous.begin());
      update_problem(p, labels, distances.data(), o.metric, o.empty_clusters, c, counts, threads);
      if (!o.final_assignment && it + 1 == o.max_iterations) {  // labels stay the previous ones
        iterations[size_t(b)] = it + 1;
        break;
      }
      const double before = inertia;
      inertia = assign_problem(p, c, o.metric, labels, distances.data(), threads);
      history.push_back(inertia);
      iterations[size_t(b)] = it + 1;
      const bool unchanged = std::equal(labels, labels + n, previous.begin());
      if (!o.fixed_iterations && (unchanged || before - inertia <= o.tolerance * std::abs(before)))
        break;
    }
    std::fill(counts, counts + k, 0);
    for (int64_t i = 0; i < n; ++i) ++counts[labels[i]];
    std::copy(c.data.begin(), c.data.end(), r.centroids.data() + b * k * d);
    r.inertia[size_t(b)] = inertia;
  });
  r.iterations = iterations.empty() ? 0 : *std::max_element(iterations.begin(), iterations.end());
  return r;
}

template <class V>
void kmeans(Context& ctx, BatchedDenseView<const V> x, int64_t k, const KmeansOptions& o,
            KmeansResult& result) {
  if (x.space == MemorySpace::device) {
    kmeans_on_device(ctx, x, k, o, result);
  } else if (o.gpu_streaming) {
    kmeans_streamed(ctx, x, k, o, result);
  } else {
    result = kmeans(ctx, x, k, o);
  }
}

template <class V>
void kmeans_assign(Context& ctx, BatchedDenseView<const V> x,
                   BatchedDenseView<const float> centroids, KmeansMetric metric, int32_t* labels,
                   float* distances, int threads, KmeansF32Precision precision) {
  (void)ctx;  // the CPU path keeps no state in it
  // As kmeans() does; on the GPU, a tile without column blocks would never hand over its turn.
  TSR_CHECK(x.cols > 0, "kmeans_assign: points have dimension 0");
  if (x.space == MemorySpace::device) {
    validate_batch(x, "kmeans_assign");
    TSR_CHECK(centroids.rows > 0, "kmeans_assign: no centroids");
    TSR_CHECK(labels != nullptr || x.batch * x.rows == 0, "kmeans_assign: labels is null");
#if TESSERA_WITH_CUDA
    check_centroid_shape(centroids, x.batch, centroids.rows, x.cols, "kmeans_assign");
    kmeans_cuda::assign(ctx, x, centroids, metric, labels, distances,
                        precision == KmeansF32Precision::exact);
    return;
#else
    TSR_FAIL("kmeans_assign: X is in device memory, but this build has no CUDA");
#endif
  }
  (void)precision;  // the CPU computes in f32 anyway
  const std::vector<float> inv_norms = check_points(x, metric, "kmeans_assign");
  TSR_CHECK(centroids.rows > 0, "kmeans_assign: no centroids");
  check_centroid_shape(centroids, x.batch, centroids.rows, x.cols, "kmeans_assign");
  TSR_CHECK(labels != nullptr || x.batch * x.rows == 0, "kmeans_assign: labels is null");
  Buffer<float> storage;
  const BatchedDenseView<const float> host_centroids = on_host(centroids, storage);
  std::vector<Centroids> tables;
  for (int64_t b = 0; b < x.batch; ++b) tables.push_back(given_centroids(host_centroids, b, metric));
  const int64_t n = x.rows;
  for_each_problem(x.batch, thread_count(threads), [&](int64_t b, int inner) {
    const ProblemData<V> p{x[b], inv_norms.empty() ? nullptr : inv_norms.data() + b * n};
    assign_problem(p, tables[size_t(b)], metric, labels + b * n,
                   distances ? distances + b * n : nullptr, inner);
  });
}

template <class V>
const KmeansResult& KMeans::fit(Context& ctx, BatchedDenseView<const V> x) {
  KmeansOptions o = options_;
  if (fitted_) {  // warm start from the held centroids
    o.init = KmeansInit::given;
    o.initial_centroids = result_.centroid_view();
  }
  kmeans(ctx, x, k_, o, result_);  // on the GPU, into the held buffers
  fitted_ = true;
  return result_;
}

template <class V>
std::vector<int32_t> KMeans::predict(Context& ctx, BatchedDenseView<const V> x) const {
  TSR_CHECK(fitted_, "KMeans::predict: fit first; there are no centroids yet");
  if (x.space == MemorySpace::device) {
    Buffer<int32_t> labels(static_cast<size_t>(x.batch * x.rows), MemorySpace::device);
    kmeans_assign(ctx, x, result_.centroid_view(), options_.metric, labels.data(), nullptr,
                  options_.threads,
                  options_.exact_f32 ? KmeansF32Precision::exact : KmeansF32Precision::tf32);
    return labels.to_vector();
  }
  std::vector<int32_t> labels(static_cast<size_t>(x.batch * x.rows));
  kmeans_assign(ctx, x, result_.centroid_view(), options_.metric, labels.data(), nullptr,
                options_.threads);
  return labels;
}

const KmeansResult& KMeans::result() const {
  TSR_CHECK(fitted_, "KMeans::result: fit first; there are no centroids yet");
  return result_;
}

template <class V>
int64_t kmeans_max_device_dimension() {
#if TESSERA_WITH_CUDA
  if (!device::available()) return 0;
  return kmeans_cuda::max_dimension<V>();
#else
  return 0;
#endif
}

const char* to_string(KmeansMetric m) {
  switch (m) {
    case KmeansMetric::l2:
      return "l2";
    case KmeansMetric::cosine:
      return "cosine";
    case KmeansMetric::inner_product:
      return "ip";
  }
  return "?";
}

const char* to_string(KmeansInit i) {
  switch (i) {
    case KmeansInit::random:
      return "random";
    case KmeansInit::kmeans_plus_plus:
      return "kmeans++";
    case KmeansInit::given:
      return "given";
  }
  return "?";
}

KmeansMetric parse_kmeans_metric(const std::string& text) {
  if (text == "l2") return KmeansMetric::l2;
  if (text == "cosine") return KmeansMetric::cosine;
  if (text == "ip" || text == "inner_product") return KmeansMetric::inner_product;
  TSR_FAIL("unknown k-means metric '", text, "' (l2, cosine, ip)");
}

KmeansInit parse_kmeans_init(const std::string& text) {
  if (text == "random") return KmeansInit::random;
  if (text == "kmeans++" || text == "kmeans_plus_plus") return KmeansInit::kmeans_plus_plus;
  TSR_FAIL("unknown k-means init '", text, "' (random, kmeans++)");
}

#define TSR_INSTANTIATE_KMEANS(V)                                                                 \
  template KmeansResult kmeans(Context&, BatchedDenseView<const V>, int64_t,                      \
                               const KmeansOptions&);                                             \
  template void kmeans(Context&, BatchedDenseView<const V>, int64_t, const KmeansOptions&,         \
                       KmeansResult&);                                                            \
  template void kmeans_assign(Context&, BatchedDenseView<const V>, BatchedDenseView<const float>, \
                              KmeansMetric, int32_t*, float*, int, KmeansF32Precision);           \
  template const KmeansResult& KMeans::fit(Context&, BatchedDenseView<const V>);                  \
  template std::vector<int32_t> KMeans::predict(Context&, BatchedDenseView<const V>) const;      \
  template int64_t kmeans_max_device_dimension<V>();
TSR_INSTANTIATE_KMEANS(float)
TSR_INSTANTIATE_KMEANS(bf16)
TSR_INSTANTIATE_KMEANS(f16)

}  // namespace tessera::ops
