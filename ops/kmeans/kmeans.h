// K-means on batches of problems: X [B, N, D] -> centroids [B, K, D], labels [B, N], counts [B, K].
// Lloyd iterations built from two stages:
// - assignment: distances ||x||^2 - 2 x.c + ||c||^2 from blocks of points against tiles of
//   centroids (a GEMM), a running argmin per point; no N x K matrix is kept. Ties go to the
//   lower centroid index.
// - sort-inverse update: labels are counting-sorted into contiguous per-cluster segments, and
//   each segment is reduced in point order; no scattered atomics, so the result is the same bits
//   on every run and thread count.
// Host inputs run on the CPU (OpenMP; the GEMM is Eigen's, built for AVX2 + FMA where the CPU
// has them). Device inputs run on the GPU (kmeans_cuda.cu): the assignment on tensor cores
// (bf16/f16 as given, f32 as tf32, or at f32 precision with exact_f32), the update by a CUB
// radix sort and ordered segment sums, the iterations captured in a CUDA graph with convergence
// tested on the device. Both are deterministic: no floating-point atomics.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/buffer.h"
#include "core/context.h"
#include "core/dense.h"

namespace tessera::ops {

enum class KmeansInit {
  random,            ///< K distinct points, uniformly
  kmeans_plus_plus,  ///< D^2 sampling (k-means++; on the GPU k-means||: rounds of oversampling
                     ///< on the device, then weighted k-means++ over the candidates)
  given,             ///< KmeansOptions::initial_centroids (a warm start)
};

enum class KmeansMetric {
  l2,             ///< squared Euclidean distance; centroids are means
  cosine,         ///< 1 - cos(x, c); points and centroids on the unit sphere (spherical k-means)
  inner_product,  ///< -x.c (largest inner product wins); centroids are means
};

/// How f32 points meet the GPU's tensor cores (KmeansOptions::exact_f32 for fits).
enum class KmeansF32Precision {
  tf32,   ///< rounded to tf32 (about 1e-3 relative)
  exact,  ///< 3xTF32: f32 precision at three times the tensor-core work
};

enum class EmptyClusters {
  keep_centroid,    ///< an empty cluster keeps its centroid
  reseed_farthest,  ///< an empty cluster moves to the point farthest from its own centroid
};

struct KmeansOptions {
  int max_iterations = 50;  ///< centroid updates at most (0: assign to the initial centroids)
  /// Stop when an iteration lowers the inertia by less than this fraction of it, or when no
  /// label changes.
  double tolerance = 1e-4;
  /// Run exactly max_iterations updates, converged or not (the same work as a fixed-iteration
  /// peer in a benchmark).
  bool fixed_iterations = false;
  /// Assign the points once more after the last update, so that labels, counts and inertia
  /// belong to the returned centroids (the default). false: the fit ends with the update of its
  /// last iteration and the labels are those that update used, the same work as peers that
  /// return their last labels (flash-kmeans): max_iterations assignments instead of one more.
  bool final_assignment = true;
  KmeansInit init = KmeansInit::kmeans_plus_plus;
  uint64_t seed = 0;  ///< problem b draws from seed and b
  KmeansMetric metric = KmeansMetric::l2;
  EmptyClusters empty_clusters = EmptyClusters::keep_centroid;
  /// Both paths are always deterministic (no floating-point atomics, fixed reduction orders);
  /// the flag is accepted so that callers can ask for it on every backend.
  bool deterministic = true;
  BatchedDenseView<const float> initial_centroids;  ///< [B, K, D] when init == given (host or device)
  int threads = 0;                                  ///< 0: OpenMP's default
  /// f32 points on the GPU: distances at f32 precision instead of tf32's (about 1e-3 relative).
  /// Each product is split into tf32 high and low parts and multiplied as hi*hi + hi*lo + lo*hi
  /// ("3xTF32": products to about 2^-21 relative; a distance then carries the f32 rounding of
  /// its accumulation, within 2^-18 of ||x||^2 + ||c||^2 in the tests): three times the
  /// tensor-core work (on sm_90a the warpgroup-MMA kernel for D <= 160, else the mma.sync
  /// kernel). No effect on 16-bit points (their products are exact already; centroids are
  /// still rounded to the input type) or on the CPU (plain f32 arithmetic there), nor on
  /// k-means|| seeding (sampling weights stay tf32).
  bool exact_f32 = false;
  /// Host X only: run on the GPU, streaming chunks of points from host memory every iteration
  /// (data larger than GPU memory). Empty clusters keep their centroids; k-means++ seeds on the
  /// CPU. Results come back in host memory. X is pinned (cudaHostRegister) for the call so that
  /// copies overlap the kernels; a caller fitting the same X again and again can pin it once
  /// itself, and the fit then uses it as it is.
  bool gpu_streaming = false;
  int64_t stream_chunk_points = 0;  ///< points per streamed chunk (0: N/16, at least 65536, then capped at a quarter of free GPU memory's worth)
  /// GPU only: time each iteration's update and assignment with CUDA events (iterations then run
  /// one by one instead of as a replayed CUDA graph) into KmeansResult::*_seconds.
  bool profile_stages = false;
};

/// Centroids, labels and counts live where X lives (host or device); the rest on the host.
struct KmeansResult {
  int64_t batch = 0, k = 0, dim = 0, points = 0;
  Buffer<float> centroids;      ///< [B, K, D], contiguous (cosine: unit length)
  Buffer<int32_t> labels;       ///< [B, N]: the nearest centroid of the returned ones
  Buffer<int64_t> counts;       ///< [B, K]: points per label
  std::vector<double> inertia;  ///< [B]: sum over points of the metric's distance to their label
  /// [B][t]: the inertia after assignment t (t = 0 is the initial centroids); for l2 and cosine
  /// it never increases (on the GPU: up to the tensor-core rounding of the distances).
  /// iterations + 1 entries (iterations without final_assignment; on the GPU at most 4096).
  std::vector<std::vector<double>> inertia_history;
  int iterations = 0;  ///< centroid updates done, the most over the batch
  /// With KmeansOptions::profile_stages on the GPU: the median seconds per iteration of the
  /// assignment (with the convergence test) and of the update (sort, sums, centroid table).
  double assign_seconds = 0, update_seconds = 0;

  BatchedDenseView<const float> centroid_view() const {
    return contiguous_batch<const float>(centroids.data(), batch, k, dim, centroids.space());
  }
};

/// Clusters each of the B problems of x into k clusters.
/// @throw tessera::Error for k <= 0, k > N, D = 0, NaN or Inf in x (naming the problem and row),
///        a zero vector under the cosine metric, given centroids of the wrong shape or with NaN,
///        N over 2^31 - 1, or device memory. On the GPU also: D over
///        kmeans_max_device_dimension<V>(), B * N over 2^31 - 1, B * K over 2^30, a point or
///        centroid with a squared norm over 1e37.
template <class V>
KmeansResult kmeans(Context& ctx, BatchedDenseView<const V> x, int64_t k,
                    const KmeansOptions& options = {});

/// As above, into result: on the GPU its device buffers are reused when their sizes fit, so a
/// loop of fits with given or random initial centroids (a warm start per diffusion step)
/// allocates nothing (k-means|| seeding allocates its own scratch). On the CPU, a plain
/// assignment. result may hold the initial centroids (options.initial_centroids viewing them).
/// A fit that fails its input checks leaves result as it was; a later failure on the GPU (out
/// of memory, a failed launch) clears it.
template <class V>
void kmeans(Context& ctx, BatchedDenseView<const V> x, int64_t k, const KmeansOptions& options,
            KmeansResult& result);

/// Labels each point of x with its nearest centroid (the metric's distance; ties to the lower
/// index). labels: [B, N]; distances: [B, N] or null; both in x's memory space. Centroids may be
/// on the host or the device. precision: f32 points on the GPU (KmeansOptions::exact_f32).
template <class V>
void kmeans_assign(Context& ctx, BatchedDenseView<const V> x,
                   BatchedDenseView<const float> centroids, KmeansMetric metric, int32_t* labels,
                   float* distances = nullptr, int threads = 0,
                   KmeansF32Precision precision = KmeansF32Precision::tf32);

/// Holds the centroids between calls: fit, then predict; fitting again warm-starts from the
/// held centroids (a few iterations per diffusion step, say).
class KMeans {
 public:
  explicit KMeans(int64_t k, KmeansOptions options = {}) : k_(k), options_(std::move(options)) {}

  /// Clusters x (from options.init the first time, from the held centroids after that).
  template <class V>
  const KmeansResult& fit(Context& ctx, BatchedDenseView<const V> x);
  /// Labels of x's points against the held centroids ([B, N]).
  template <class V>
  std::vector<int32_t> predict(Context& ctx, BatchedDenseView<const V> x) const;

  bool fitted() const { return fitted_; }
  const KmeansResult& result() const;
  KmeansOptions& options() { return options_; }

 private:
  int64_t k_;
  KmeansOptions options_;
  KmeansResult result_;
  bool fitted_ = false;
};

/// The largest point dimension the GPU path takes for value type V on the current device: 2^20
/// where the streaming assignment fits the GPU's shared memory (points wider than a
/// shared-memory tile holds, a few hundred dimensions, stream through the assignment with the
/// centroids, slower), else the widest resident tile (f32 64, 16-bit 128 on 99 KiB GPUs such as
/// sm_86/89); 0 in a build without CUDA or when no GPU is visible.
template <class V>
int64_t kmeans_max_device_dimension();

const char* to_string(KmeansMetric m);
const char* to_string(KmeansInit i);
/// Parses "l2", "cosine", "ip"/"inner_product"; throws naming the text otherwise.
KmeansMetric parse_kmeans_metric(const std::string& text);
/// Parses "random", "kmeans++"/"kmeans_plus_plus"; throws naming the text otherwise.
KmeansInit parse_kmeans_init(const std::string& text);

}  // namespace tessera::ops
