// ops::kmeans on the GPU against the float64 reference: the fused assignment on odd shapes and
// strided views for every value type and metric, one Lloyd step against the float64 update, the
// loop's guarantees (inertia never increases beyond the tensor-core rounding, same bits on every
// run, a batch equals its problems run alone), empty-cluster policies, ties across centroid
// tiles, the exact-f32 option, points too wide for a resident tile, the KMeans object, bad
// input and real SIFT data. Skips without a device.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#if TESSERA_WITH_CUDA
#include <cuda_runtime.h>
#endif

#include "core/device.h"
#include "core/random.h"
#include "formats/io.h"
#include "ops/kmeans/kmeans.h"
#include "tests/reference/kmeans_reference.h"
#include "tests/test_util.h"

namespace tessera {
namespace {

using ops::EmptyClusters;
using ops::KmeansInit;
using ops::KmeansMetric;
using ops::KmeansOptions;
using ::testing::HasSubstr;
using tessera::testing::error_of;

#define REQUIRE_DEVICE() \
  if (!device::available()) GTEST_SKIP() << "no CUDA device"

// Sets an environment variable (value nullptr: unsets it) for its lifetime, then restores what
// was there, also when the scope throws.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* before = std::getenv(name)) had_ = true, saved_ = before;
    if (value) setenv(name, value, 1); else unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_) setenv(name_, saved_.c_str(), 1); else unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  bool had_ = false;
  std::string saved_;
};

// Selects the assignment kernel for its lifetime: nullptr for the default (the wgmma kernel on
// sm_90a builds), "wgmma256" / "wgmma128" for its block sizes, "mma_sync" for the portable one
// (the only one in other builds).
class AssignKernel : ScopedEnv {
 public:
  explicit AssignKernel(const char* choice) : ScopedEnv("TESSERA_KMEANS_KERNEL", choice) {}
};
const char* const kAssignKernels[] = {nullptr, "wgmma256", "wgmma128", "mma_sync"};

// Whether this GPU's k-means path takes points of width d (a GPU without the 108 KiB a block of
// the streaming kernel, such as sm_86/89, takes only resident widths: f32 64, 16-bit 128).
template <class V>
bool gpu_takes(int64_t d) {
  return d <= ops::kmeans_max_device_dimension<V>();
}


using reference::tensor_core_rounding;

// B problems of n points in d dimensions, row stride ld >= d, values uniform in [-1, 1) (or
// around `centres` well-separated blobs when centres > 0), on the host and on the device.
template <class V>
struct Points {
  int64_t batch, n, d, ld;
  Buffer<V> host, dev;

  Points(int64_t b, int64_t rows, int64_t cols, int64_t stride, uint64_t seed, int centres = 0)
      : batch(b), n(rows), d(cols), ld(stride) {
    Rng rng(seed);
    std::vector<float> c(size_t(std::max(centres, 1) * cols));
    for (float& v : c) v = float(rng.uniform(-10, 10));
    host = Buffer<V>(size_t(std::max<int64_t>(b * n * ld, 1)), from_float<V>(0.0));
    for (int64_t p = 0; p < b; ++p) {
      for (int64_t i = 0; i < n; ++i) {
        const int64_t which = centres > 0 ? int64_t(rng.below(uint64_t(centres))) : 0;
        for (int64_t t = 0; t < d; ++t) {
          const double v = centres > 0 ? c[size_t(which * d + t)] + rng.uniform(-0.5, 0.5)
                                       : rng.uniform(-1, 1);
          host.data()[(p * n + i) * ld + t] = from_float<V>(v);
        }
      }
    }
    dev = host.to(MemorySpace::device);
  }
  BatchedDenseView<const V> on(MemorySpace space) const {
    return {batch, n, d, ld, n * ld, (space == MemorySpace::host ? host : dev).data(), space};
  }
  DenseView<const V> problem(int64_t b) const { return on(MemorySpace::host)[b]; }
};

template <class V>
void expect_labels(const DenseView<const V>& x, const float* centroids, int64_t k,
                   KmeansMetric metric, const int32_t* labels, const std::string& what) {
  const reference::LabelCheck r = reference::check_labels(x, centroids, k, metric, labels, 1,
                                                          tensor_core_rounding<V>());
  EXPECT_EQ(r.failures, 0) << what << ": first at point " << r.first_failure << " (label "
                           << (r.first_failure >= 0 ? labels[r.first_failure] : -1) << ")";
}

std::vector<float> random_centroids(int64_t b, int64_t k, int64_t d, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> c(size_t(b * k * d));
  for (float& v : c) v = float(rng.uniform(-1, 1));
  return c;
}

template <class V>
class GpuKmeans : public ::testing::Test {};
using ValueTypes = ::testing::Types<float, bf16, f16>;
TYPED_TEST_SUITE(GpuKmeans, ValueTypes);

TYPED_TEST(GpuKmeans, AssignmentMatchesTheReferenceOnOddShapes) {
  using V = TypeParam;
  REQUIRE_DEVICE();
  Context ctx;
  struct Shape {
    int64_t b, n, d, ld, k;
  };
  // Partial point tiles, D not a multiple of 8 (scalar loads), ld > d, several centroid tiles;
  // D = 700 and 1024: too wide for a resident point tile, the points stream with the centroids
  // (scalar and 16-byte loads).
  for (const char* kernel : kAssignKernels) {
  const AssignKernel choice(kernel);
  for (const Shape s : {Shape{1, 1, 1, 1, 1}, Shape{2, 129, 3, 3, 5}, Shape{1, 300, 37, 40, 130},
                        Shape{3, 257, 128, 128, 300}, Shape{1, 200, 129, 131, 7},
                        Shape{2, 1000, 64, 72, 1000}, Shape{1, 130, 256, 256, 129},
                        Shape{1, 150, 700, 703, 130}, Shape{2, 130, 1024, 1024, 64}}) {
    if (!gpu_takes<V>(s.d)) continue;
    const Points<V> x(s.b, s.n, s.d, s.ld, 1000 + s.n + s.d);
    const std::vector<float> c = random_centroids(s.b, s.k, s.d, 7 + s.k);
    for (KmeansMetric metric :
         {KmeansMetric::l2, KmeansMetric::cosine, KmeansMetric::inner_product}) {
      Buffer<int32_t> labels(size_t(s.b * s.n), MemorySpace::device);
      Buffer<float> dist(size_t(s.b * s.n), MemorySpace::device);
      ops::kmeans_assign(ctx, x.on(MemorySpace::device),
                         contiguous_batch<const float>(c.data(), s.b, s.k, s.d), metric,
                         labels.data(), dist.data());
      const std::vector<int32_t> got = labels.to_vector();
      const std::vector<float> got_dist = dist.to_vector();
      for (int64_t b = 0; b < s.b; ++b) {
        const std::string what = std::string(kernel ? kernel : "default") + " " +
                                 ops::to_string(metric) + " b=" + std::to_string(b) +
                                 " n=" + std::to_string(s.n) + " d=" + std::to_string(s.d) +
                                 " k=" + std::to_string(s.k);
        const float* cb = c.data() + b * s.k * s.d;
        expect_labels(x.problem(b), cb, s.k, metric, got.data() + b * s.n, what);
        // The reported distance is the metric's distance to the reported label.
        const std::vector<float> prepared =
            reference::prepared_centroids(cb, s.k, s.d, metric);
        for (int64_t i = 0; i < s.n; ++i) {
          const std::vector<double> p = reference::point64(x.problem(b), i, metric);
          const int32_t l = got[size_t(b * s.n + i)];
          ASSERT_TRUE(l >= 0 && l < s.k) << what;
          const double want = reference::distance64(p, prepared.data() + l * s.d, metric);
          double scale = 1;
          for (int64_t t = 0; t < s.d; ++t)
            scale += p[size_t(t)] * p[size_t(t)] +
                     double(prepared[size_t(l * s.d + t)]) * prepared[size_t(l * s.d + t)];
          ASSERT_NEAR(got_dist[size_t(b * s.n + i)], want,
                      tensor_core_rounding<V>() * scale + 1e-6 * s.d)
              << what << " point " << i;
        }
      }
    }
  }
  }
}

TYPED_TEST(GpuKmeans, OneLloydStepMatchesTheFloat64Update) {
  using V = TypeParam;
  REQUIRE_DEVICE();
  Context ctx;
  struct Shape {
    int64_t b, n, d, k;
  };
  // Clusters of ~20 points (one chunk each); of ~400 points over D = 133 (several 128-point
  // chunks, scalar loads, two passes over the columns); of ~700 over D = 136 (vector loads, the
  // second pass with lanes past D).
  for (const Shape& shape :
       {Shape{2, 3000, 45, 140}, Shape{2, 2000, 133, 5}, Shape{1, 2100, 136, 3}}) {
    const int64_t b = shape.b, n = shape.n, d = shape.d, k = shape.k;
    const Points<V> x(b, n, d, d, 31);
    const std::vector<float> c0 = random_centroids(b, k, d, 32);
    for (KmeansMetric metric :
         {KmeansMetric::l2, KmeansMetric::cosine, KmeansMetric::inner_product}) {
      Buffer<int32_t> l0(size_t(b * n), MemorySpace::device);
      ops::kmeans_assign(ctx, x.on(MemorySpace::device),
                         contiguous_batch<const float>(c0.data(), b, k, d), metric, l0.data());
      KmeansOptions o;
      o.init = KmeansInit::given;
      o.initial_centroids = contiguous_batch<const float>(c0.data(), b, k, d);
      o.max_iterations = 1;
      o.fixed_iterations = true;
      o.metric = metric;
      const ops::KmeansResult r = ops::kmeans(ctx, x.on(MemorySpace::device), k, o);
      ASSERT_EQ(r.iterations, 1);
      EXPECT_EQ(r.centroids.space(), MemorySpace::device);
      const std::vector<int32_t> labels0 = l0.to_vector(), labels1 = r.labels.to_vector();
      const std::vector<float> c1 = r.centroids.to_vector();
      const std::vector<int64_t> counts = r.counts.to_vector();
      for (int64_t p = 0; p < b; ++p) {
        const std::vector<int32_t> lp(labels0.begin() + p * n, labels0.begin() + (p + 1) * n);
        const std::vector<float> old =
            reference::prepared_centroids(c0.data() + p * k * d, k, d, metric);
        const std::vector<double> want = reference::update64(x.problem(p), lp, k, old, metric);
        for (int64_t e = 0; e < k * d; ++e) {
          ASSERT_NEAR(c1[size_t(p * k * d + e)], want[size_t(e)],
                      2e-5 * (1 + std::abs(want[size_t(e)])))
              << ops::to_string(metric) << " D = " << d << " problem " << p << " centroid " << e / d;
        }
        expect_labels(x.problem(p), c1.data() + p * k * d, k, metric, labels1.data() + p * n,
                      "after one step");
        std::vector<int64_t> hist(size_t(k), 0);
        for (int64_t i = 0; i < n; ++i) ++hist[size_t(labels1[size_t(p * n + i)])];
        EXPECT_EQ(std::vector<int64_t>(counts.begin() + p * k, counts.begin() + (p + 1) * k), hist);
        ASSERT_EQ(r.inertia_history[size_t(p)].size(), 2u);
        EXPECT_EQ(r.inertia[size_t(p)], r.inertia_history[size_t(p)][1]);
      }
    }
  }
}

TYPED_TEST(GpuKmeans, FitConvergesWithTheSameBitsEveryRun) {
  using V = TypeParam;
  REQUIRE_DEVICE();
  Context ctx;
  const int64_t b = 3, n = 5000, d = 32, k = 20;
  const Points<V> x(b, n, d, d, 77, /*centres=*/20);
  for (KmeansMetric metric : {KmeansMetric::l2, KmeansMetric::cosine}) {
    KmeansOptions o;
    o.init = KmeansInit::random;
    o.seed = 5;
    o.max_iterations = 40;
    o.metric = metric;
    const ops::KmeansResult r1 = ops::kmeans(ctx, x.on(MemorySpace::device), k, o);
    const ops::KmeansResult r2 = ops::kmeans(ctx, x.on(MemorySpace::device), k, o);
    EXPECT_EQ(r1.centroids.to_vector(), r2.centroids.to_vector()) << "same bits every run";
    EXPECT_EQ(r1.labels.to_vector(), r2.labels.to_vector());
    EXPECT_EQ(r1.inertia, r2.inertia);
    EXPECT_LT(r1.iterations, o.max_iterations) << "converges on blobs";
    const std::vector<float> c = r1.centroids.to_vector();
    const std::vector<int32_t> labels = r1.labels.to_vector();
    for (int64_t p = 0; p < b; ++p) {
      const auto& h = r1.inertia_history[size_t(p)];
      for (size_t t = 1; t < h.size(); ++t) {
        EXPECT_LE(h[t], h[t - 1] * (1 + 4 * tensor_core_rounding<V>()) + 1e-9)
            << ops::to_string(metric) << " problem " << p << " iteration " << t;
      }
      expect_labels(x.problem(p), c.data() + p * k * d, k, metric, labels.data() + p * n,
                    "fit");
    }
  }
}

// A fit of the batch x from the given centroids c0 [B, k, d] against the listed problems fitted
// alone: the same centroid and label bits and the same inertia history.
template <class V>
void expect_batch_equals_problems_alone(Context& ctx, const Points<V>& x, int64_t k,
                                        const std::vector<float>& c0, int max_iterations,
                                        const std::vector<int64_t>& problems) {
  const int64_t n = x.n, d = x.d;
  KmeansOptions o;
  o.init = KmeansInit::given;
  o.initial_centroids = contiguous_batch<const float>(c0.data(), x.batch, k, d);
  o.max_iterations = max_iterations;
  const ops::KmeansResult all = ops::kmeans(ctx, x.on(MemorySpace::device), k, o);
  const std::vector<float> call = all.centroids.to_vector();
  const std::vector<int32_t> lall = all.labels.to_vector();
  for (int64_t p : problems) {
    BatchedDenseView<const V> one = x.on(MemorySpace::device);
    one.batch = 1;
    one.data += p * n * x.ld;
    KmeansOptions op = o;
    op.initial_centroids = contiguous_batch<const float>(c0.data() + p * k * d, 1, k, d);
    const ops::KmeansResult r = ops::kmeans(ctx, one, k, op);
    const std::vector<float> c = r.centroids.to_vector();
    EXPECT_TRUE(std::equal(c.begin(), c.end(), call.begin() + p * k * d)) << "problem " << p;
    const std::vector<int32_t> l = r.labels.to_vector();
    EXPECT_TRUE(std::equal(l.begin(), l.end(), lall.begin() + p * n)) << "problem " << p;
    EXPECT_EQ(r.inertia_history[0], all.inertia_history[size_t(p)]) << "problem " << p;
  }
}

TYPED_TEST(GpuKmeans, BatchEqualsProblemsAlone) {
  using V = TypeParam;
  REQUIRE_DEVICE();
  Context ctx;
  const int64_t b = 4, n = 2000, d = 24, k = 50;
  const Points<V> x(b, n, d, d, 90, 12);
  expect_batch_equals_problems_alone(ctx, x, k, random_centroids(b, k, d, 91), 6, {0, 1, 2, 3});
}

// The update sorts 16-bit keys (b * K + label) while B * K <= 65536 and 32-bit ones past it:
// a batch of 66,000 clusters gives each problem the bits it gets alone (16-bit keys).
TEST(GpuKmeansOps, BatchesPastSixteenBitKeysEqualProblemsAlone) {
  REQUIRE_DEVICE();
  Context ctx;
  const int64_t b = 33, n = 2100, d = 6, k = 2000;
  const Points<f16> x(b, n, d, d, 95, 40);
  expect_batch_equals_problems_alone(ctx, x, k, random_centroids(b, k, d, 96), 3, {0, 17, b - 1});
}

// The returned counts are those of the returned labels: counted in shared memory per span of
// points (one span, several, spans over a batch) and, past 12288 clusters, by global atomics.
TEST(GpuKmeansOps, CountsAreThoseOfTheLabels) {
  REQUIRE_DEVICE();
  Context ctx;
  struct Shape {
    int64_t b, n, d, k;
  };
  for (const Shape& shape : {Shape{1, 3000, 8, 40}, Shape{3, 20000, 5, 100},
                             Shape{2, 7000, 6, 3000}, Shape{1, 14000, 4, 13000}}) {
    const Points<float> x(shape.b, shape.n, shape.d, shape.d, 61);
    KmeansOptions o;
    o.init = KmeansInit::random;
    o.seed = 3;
    o.max_iterations = 2;
    const ops::KmeansResult r = ops::kmeans(ctx, x.on(MemorySpace::device), shape.k, o);
    const std::vector<int32_t> labels = r.labels.to_vector();
    std::vector<int64_t> want(size_t(shape.b * shape.k), 0);
    for (int64_t p = 0; p < shape.b; ++p) {
      for (int64_t i = 0; i < shape.n; ++i) {
        const int32_t j = labels[size_t(p * shape.n + i)];
        ASSERT_TRUE(j >= 0 && j < shape.k) << "label " << j;
        ++want[size_t(p * shape.k + j)];
      }
    }
    EXPECT_EQ(r.counts.to_vector(), want) << "k = " << shape.k;
  }
}

TEST(GpuKmeansOps, WithoutTheFinalAssignmentTheLabelsAreThoseOfTheLastUpdate) {
  REQUIRE_DEVICE();
  Context ctx;
  const Points<bf16> x(3, 3000, 24, 24, 41);
  const std::vector<float> c0 = random_centroids(3, 40, 24, 42);
  KmeansOptions o;
  o.init = KmeansInit::given;
  o.initial_centroids = contiguous_batch<const float>(c0.data(), 3, 40, 24);
  o.fixed_iterations = true;
  for (int iters : {1, 2, 5}) {  // direct launches and the replayed graph
    o.max_iterations = iters - 1;
    const ops::KmeansResult before = ops::kmeans(ctx, x.on(MemorySpace::device), 40, o);
    o.max_iterations = iters;
    const ops::KmeansResult full = ops::kmeans(ctx, x.on(MemorySpace::device), 40, o);
    o.final_assignment = false;
    const ops::KmeansResult last = ops::kmeans(ctx, x.on(MemorySpace::device), 40, o);
    o.final_assignment = true;
    EXPECT_EQ(last.iterations, iters);
    EXPECT_EQ(last.labels.to_vector(), before.labels.to_vector()) << iters;
    EXPECT_EQ(last.counts.to_vector(), before.counts.to_vector()) << iters;
    EXPECT_EQ(last.centroids.to_vector(), full.centroids.to_vector()) << iters;
    EXPECT_EQ(last.inertia_history, before.inertia_history) << iters;
  }
}

TEST(GpuKmeansOps, MatchesTheCpuPathFromTheSameRandomSeeds) {
  REQUIRE_DEVICE();
  Context ctx;
  const Points<float> x(2, 4000, 16, 16, 55, 10);
  KmeansOptions o;
  o.init = KmeansInit::random;
  o.seed = 11;
  o.max_iterations = 0;  // the initial centroids: the same random points on both paths
  const ops::KmeansResult gpu = ops::kmeans(ctx, x.on(MemorySpace::device), 10, o);
  const ops::KmeansResult cpu = ops::kmeans(ctx, x.on(MemorySpace::host), 10, o);
  EXPECT_EQ(gpu.centroids.to_vector(), cpu.centroids.to_vector());
  o.max_iterations = 30;
  const ops::KmeansResult g = ops::kmeans(ctx, x.on(MemorySpace::device), 10, o);
  const ops::KmeansResult c = ops::kmeans(ctx, x.on(MemorySpace::host), 10, o);
  // The same seeds on blobs: both paths reach (nearly) the same partition and inertia; tf32
  // rounding may move a point that sits between two clusters.
  const std::vector<int32_t> gl = g.labels.to_vector(), cl = c.labels.to_vector();
  int64_t same = 0;
  for (size_t i = 0; i < gl.size(); ++i) same += gl[i] == cl[i];
  EXPECT_GE(double(same), 0.99 * double(gl.size()));
  for (size_t p = 0; p < 2; ++p) EXPECT_NEAR(g.inertia[p], c.inertia[p], 1e-3 * c.inertia[p]);
}

// Centroids in near pairs (c and c plus a step of a few 1e-3 per coordinate): many points lie
// within tf32's rounding of a tie between the two of a pair, but far outside f32's.
std::vector<float> near_pair_centroids(int64_t b, int64_t k, int64_t d, uint64_t seed) {
  std::vector<float> c = random_centroids(b, k, d, seed);
  Rng rng(seed + 1);
  for (int64_t j = 1; j < b * k; j += 2) {  // k even: the pairs stay inside a problem
    for (int64_t t = 0; t < d; ++t)
      c[size_t(j * d + t)] = c[size_t((j - 1) * d + t)] + float(rng.uniform(-4e-3, 4e-3));
  }
  return c;
}

// Labels of problem-major x against c [B, k, d] that miss the float64 nearest by more than
// `rounding` of the norm scale, summed over the problems.
int64_t label_failures(const Points<float>& x, const std::vector<float>& c, int64_t k,
                       KmeansMetric metric, const int32_t* labels, double rounding) {
  int64_t failures = 0;
  for (int64_t b = 0; b < x.batch; ++b) {
    failures += reference::check_labels(x.problem(b), c.data() + b * k * x.d, k, metric,
                                        labels + b * x.n, 1, rounding)
                    .failures;
  }
  return failures;
}

constexpr double kF32Rounding = 0x1p-18;  // tf32's allowance (tensor_core_rounding) is 2^-8

// With exact_f32 every label and distance is the float64 one up to f32 rounding, on the 3xTF32
// wgmma kernel (the default on sm_90a for D <= 160, taking turns up to D = 96) and on the
// mma.sync one (asked for, or D = 200: too wide for the wgmma kernel's doubled point tile; D =
// 400: points streamed with the centroids); tf32 on the same data misses labels in every shape,
// so each check can fail.
TEST(GpuKmeansOps, ExactF32AssignsAtF32Precision) {
  REQUIRE_DEVICE();
  Context ctx;
  struct Shape {
    int64_t b, n, d, ld, k;  // k even
  };
  for (const char* kernel : {static_cast<const char*>(nullptr), "mma_sync"}) {
    const AssignKernel choice(kernel);
    for (const Shape s : {Shape{1, 1, 1, 1, 2}, Shape{2, 700, 37, 40, 130},
                          Shape{1, 400, 96, 96, 260}, Shape{1, 1500, 128, 128, 300},
                          Shape{1, 200, 129, 131, 8}, Shape{1, 300, 200, 200, 10},
                          Shape{1, 300, 400, 400, 10}}) {
      if (!gpu_takes<float>(s.d)) continue;
      const Points<float> x(s.b, s.n, s.d, s.ld, 500 + s.d);
      const std::vector<float> c = near_pair_centroids(s.b, s.k, s.d, 600 + s.k);
      const auto centroids = contiguous_batch<const float>(c.data(), s.b, s.k, s.d);
      const std::string shape = std::string(kernel ? kernel : "default") +
                                " d=" + std::to_string(s.d) + " k=" + std::to_string(s.k);
      int64_t tf32_failures = 0;
      for (KmeansMetric metric :
           {KmeansMetric::l2, KmeansMetric::cosine, KmeansMetric::inner_product}) {
        const std::string what = shape + " " + ops::to_string(metric);
        Buffer<int32_t> labels(size_t(s.b * s.n), MemorySpace::device);
        Buffer<float> dist(size_t(s.b * s.n), MemorySpace::device);
        ops::kmeans_assign(ctx, x.on(MemorySpace::device), centroids, metric, labels.data(),
                           dist.data(), 0, ops::KmeansF32Precision::exact);
        const std::vector<int32_t> got = labels.to_vector();
        const std::vector<float> got_dist = dist.to_vector();
        EXPECT_EQ(label_failures(x, c, s.k, metric, got.data(), kF32Rounding), 0) << what;
        ops::kmeans_assign(ctx, x.on(MemorySpace::device), centroids, metric, labels.data());
        tf32_failures +=
            label_failures(x, c, s.k, metric, labels.to_vector().data(), kF32Rounding);
        for (int64_t b = 0; b < s.b; ++b) {
          const std::vector<float> prepared =
              reference::prepared_centroids(c.data() + b * s.k * s.d, s.k, s.d, metric);
          for (int64_t i = 0; i < s.n; ++i) {
            const std::vector<double> p = reference::point64(x.problem(b), i, metric);
            const int32_t l = got[size_t(b * s.n + i)];
            ASSERT_TRUE(l >= 0 && l < s.k) << what;
            double scale = 1;
            for (int64_t t = 0; t < s.d; ++t)
              scale += p[size_t(t)] * p[size_t(t)] +
                       double(prepared[size_t(l * s.d + t)]) * prepared[size_t(l * s.d + t)];
            ASSERT_NEAR(got_dist[size_t(b * s.n + i)],
                        reference::distance64(p, prepared.data() + l * s.d, metric),
                        kF32Rounding * scale)
                << what << " problem " << b << " point " << i;
          }
        }
      }
      if (s.n >= 200) {
        EXPECT_GT(tf32_failures, 0) << shape << ": tf32 should miss some here";
      }
    }
  }
}

// The option reaches every entry point: a fit (no iterations: the labels of the given near-pair
// centroids), a streamed fit and KMeans::predict are at f32 precision with it and miss labels
// without it. Then a fit of several iterations: the same bits every run, labels of the returned
// centroids at f32 precision, the inertia never rising beyond f32 rounding.
TEST(GpuKmeansOps, ExactF32ReachesFitsStreamingAndPredict) {
  REQUIRE_DEVICE();
  Context ctx;
  const int64_t b = 2, n = 1500, d = 128, k = 300;
  if (!gpu_takes<float>(d)) GTEST_SKIP() << "this GPU's k-means path takes f32 D up to "
                                          << ops::kmeans_max_device_dimension<float>();
  const Points<float> x(b, n, d, d, 900);
  const std::vector<float> c = near_pair_centroids(b, k, d, 901);
  KmeansOptions o;
  o.init = KmeansInit::given;
  o.initial_centroids = contiguous_batch<const float>(c.data(), b, k, d);
  o.max_iterations = 0;
  for (const bool exact : {true, false}) {
    o.exact_f32 = exact;
    const ops::KmeansResult fit = ops::kmeans(ctx, x.on(MemorySpace::device), k, o);
    KmeansOptions so = o;
    so.gpu_streaming = true;
    so.stream_chunk_points = 700;
    const ops::KmeansResult streamed = ops::kmeans(ctx, x.on(MemorySpace::host), k, so);
    ops::KMeans km(k, o);
    km.fit(ctx, x.on(MemorySpace::device));
    const std::vector<int32_t> predicted = km.predict(ctx, x.on(MemorySpace::device));
    const std::vector<int32_t> fit_labels = fit.labels.to_vector();
    const int64_t misses[3] = {
        label_failures(x, c, k, KmeansMetric::l2, fit_labels.data(), kF32Rounding),
        label_failures(x, c, k, KmeansMetric::l2, streamed.labels.data(), kF32Rounding),
        label_failures(x, c, k, KmeansMetric::l2, predicted.data(), kF32Rounding)};
    for (int e = 0; e < 3; ++e) {
      const char* entry[] = {"fit", "streamed fit", "predict"};
      if (exact) {
        EXPECT_EQ(misses[e], 0) << entry[e];
      } else {
        EXPECT_GT(misses[e], 0) << entry[e] << " at tf32: the data should tell";
      }
    }
  }

  const Points<float> blobs(b, 4000, 48, 48, 800, 16);
  KmeansOptions f;
  f.init = KmeansInit::random;
  f.seed = 3;
  f.max_iterations = 10;
  f.exact_f32 = true;
  const ops::KmeansResult r1 = ops::kmeans(ctx, blobs.on(MemorySpace::device), 16, f);
  const ops::KmeansResult r2 = ops::kmeans(ctx, blobs.on(MemorySpace::device), 16, f);
  EXPECT_EQ(r1.centroids.to_vector(), r2.centroids.to_vector());
  EXPECT_EQ(r1.labels.to_vector(), r2.labels.to_vector());
  const std::vector<float> rc = r1.centroids.to_vector();
  EXPECT_EQ(label_failures(blobs, rc, 16, KmeansMetric::l2, r1.labels.to_vector().data(),
                           kF32Rounding),
            0);
  for (int64_t p = 0; p < b; ++p) {
    const auto& h = r1.inertia_history[size_t(p)];
    for (size_t t = 1; t < h.size(); ++t) EXPECT_LE(h[t], h[t - 1] * (1 + 1e-6)) << t;
  }
}

// Points wider than a resident shared-memory tile (900 bf16, 700 f32) stream through the
// assignment with the centroids: a fit converges on blobs with labels of its own centroids, the
// same bits every run, the inertia never rising beyond the rounding; a streamed fit agrees.
TEST(GpuKmeansOps, WidePointsStreamThroughTheAssignment) {
  REQUIRE_DEVICE();
  if (!gpu_takes<bf16>(900) || !gpu_takes<float>(700)) {
    GTEST_SKIP() << "this GPU's shared memory does not hold the streaming assignment kernel";
  }
  Context ctx;
  const Points<bf16> x(2, 1000, 900, 900, 950, 8);
  KmeansOptions o;
  o.init = KmeansInit::random;
  o.seed = 4;
  o.max_iterations = 10;
  const ops::KmeansResult r1 = ops::kmeans(ctx, x.on(MemorySpace::device), 8, o);
  const ops::KmeansResult r2 = ops::kmeans(ctx, x.on(MemorySpace::device), 8, o);
  EXPECT_EQ(r1.centroids.to_vector(), r2.centroids.to_vector());
  EXPECT_EQ(r1.labels.to_vector(), r2.labels.to_vector());
  const std::vector<float> c = r1.centroids.to_vector();
  const std::vector<int32_t> labels = r1.labels.to_vector();
  for (int64_t p = 0; p < 2; ++p) {
    const auto& h = r1.inertia_history[size_t(p)];
    for (size_t t = 1; t < h.size(); ++t) {
      EXPECT_LE(h[t], h[t - 1] * (1 + 4 * tensor_core_rounding<bf16>()) + 1e-9) << t;
    }
    expect_labels(x.problem(p), c.data() + p * 8 * 900, 8, KmeansMetric::l2,
                  labels.data() + p * 1000, "wide fit");
  }
  const Points<float> xf(1, 2000, 700, 701, 951, 6);
  KmeansOptions so;
  so.init = KmeansInit::random;
  so.seed = 5;
  so.max_iterations = 0;
  const std::vector<float> c0 = ops::kmeans(ctx, xf.on(MemorySpace::device), 6, so).centroids.to_vector();
  so.init = KmeansInit::given;
  so.initial_centroids = contiguous_batch<const float>(c0.data(), 1, 6, 700);
  so.max_iterations = 4;
  so.fixed_iterations = true;
  const ops::KmeansResult mem = ops::kmeans(ctx, xf.on(MemorySpace::device), 6, so);
  so.gpu_streaming = true;
  so.stream_chunk_points = 700;
  const ops::KmeansResult st = ops::kmeans(ctx, xf.on(MemorySpace::host), 6, so);
  const std::vector<int32_t> ml = mem.labels.to_vector();
  int64_t same = 0;
  for (int64_t i = 0; i < 2000; ++i) same += ml[size_t(i)] == st.labels.data()[i];
  EXPECT_GE(same, 1998);
  EXPECT_NEAR(st.inertia[0], mem.inertia[0], 1e-4 * mem.inertia[0]);
  expect_labels(xf.problem(0), st.centroids.data(), 6, KmeansMetric::l2, st.labels.data(),
                "wide streamed fit");
}

// On a GPU with 99 KiB of shared memory a block (sm_86/89/120), simulated here by lowering the
// opt-in the planner sees: the streaming kernel does not fit, so the GPU path takes only what a
// resident point tile holds, reports that limit, fits within it, and refuses wider points with
// one clear error instead of a failed launch.
TEST(GpuKmeansOps, ASmallerSharedMemoryGpuTakesResidentWidthsAndRefusesWider) {
  REQUIRE_DEVICE();
  // Any D on GPUs with the streaming kernel's shared memory; under 100 on any other (at most
  // 108 KiB a block leaves at most 96 for a resident f32 tile).
  const int64_t full = ops::kmeans_max_device_dimension<float>();
  EXPECT_TRUE(full == int64_t(1) << 20 || full <= 96) << full;
  if (full < 64) GTEST_SKIP() << "this GPU has less shared memory than the one simulated";
  const ScopedEnv smaller("TESSERA_KMEANS_SMEM_OPTIN", "101376");
  EXPECT_EQ(ops::kmeans_max_device_dimension<float>(), 64);
  EXPECT_EQ(ops::kmeans_max_device_dimension<bf16>(), 128);
  EXPECT_EQ(ops::kmeans_max_device_dimension<f16>(), 128);
  Context ctx;
  KmeansOptions o;
  o.init = KmeansInit::random;
  o.seed = 6;
  o.max_iterations = 6;
  for (const char* kernel : kAssignKernels) {
    const AssignKernel choice(kernel);
    const Points<float> x(1, 1500, 64, 64, 960, 5);
    const ops::KmeansResult r = ops::kmeans(ctx, x.on(MemorySpace::device), 5, o);
    expect_labels(x.problem(0), r.centroids.to_vector().data(), 5, KmeansMetric::l2,
                  r.labels.to_vector().data(), kernel ? kernel : "default kernel");
    const Points<bf16> xb(1, 1500, 128, 128, 961, 5);
    const ops::KmeansResult rb = ops::kmeans(ctx, xb.on(MemorySpace::device), 5, o);
    expect_labels(xb.problem(0), rb.centroids.to_vector().data(), 5, KmeansMetric::l2,
                  rb.labels.to_vector().data(), kernel ? kernel : "default kernel");
  }
  const Points<float> wide(1, 100, 65, 65, 962);
  EXPECT_THAT(error_of([&] { ops::kmeans(ctx, wide.on(MemorySpace::device), 2, o); }),
              HasSubstr("kmeans: D = 65 needs the streaming assignment kernel, whose 108 KiB of shared "
                        "memory a block this GPU does not allow (98 KiB); the GPU path here takes D up to 64"));
  o.gpu_streaming = true;  // refused before the host seeding pass over X
  EXPECT_THAT(error_of([&] { ops::kmeans(ctx, wide.on(MemorySpace::host), 2, o); }),
              HasSubstr("kmeans: D = 65 needs the streaming assignment kernel"));
}

TEST(GpuKmeansOps, KmeansParallelSeedsFindEveryBlobDeterministically) {
  REQUIRE_DEVICE();
  Context ctx;
  const int64_t b = 3, n = 6000, d = 16, k = 25;
  const Points<float> x(b, n, d, d, 71, /*centres=*/25);  // spread +-0.5: 16/12 per point
  KmeansOptions o;
  o.init = KmeansInit::kmeans_plus_plus;  // k-means|| on the device
  o.seed = 9;
  o.max_iterations = 0;
  const ops::KmeansResult r1 = ops::kmeans(ctx, x.on(MemorySpace::device), k, o);
  const ops::KmeansResult r2 = ops::kmeans(ctx, x.on(MemorySpace::device), k, o);
  EXPECT_EQ(r1.centroids.to_vector(), r2.centroids.to_vector()) << "same seeds every run";
  // Seeding quality on blobs: far better than random points, about as good as the CPU's exact
  // k-means++ (which itself leaves a blob without a seed now and then: 25 blobs, K = 25).
  KmeansOptions random = o;
  random.init = KmeansInit::random;
  const ops::KmeansResult rr = ops::kmeans(ctx, x.on(MemorySpace::device), k, random);
  const ops::KmeansResult cpu = ops::kmeans(ctx, x.on(MemorySpace::host), k, o);
  double sum = 0, sum_random = 0, sum_cpu = 0;
  for (int64_t p = 0; p < b; ++p) {
    sum += r1.inertia[size_t(p)], sum_random += rr.inertia[size_t(p)];
    sum_cpu += cpu.inertia[size_t(p)];
  }
  EXPECT_LT(sum, 0.25 * sum_random);
  EXPECT_LT(sum, 3 * sum_cpu);
  const std::vector<float> c = r1.centroids.to_vector();
  for (int64_t p = 0; p < b; ++p) {
    // Each seed is one of the points.
    for (int64_t j = 0; j < k; ++j) {
      const float* seed = c.data() + (p * k + j) * d;
      bool found = false;
      for (int64_t i = 0; i < n && !found; ++i) {
        found = std::equal(seed, seed + d, x.host.data() + (p * n + i) * d);
      }
      EXPECT_TRUE(found) << "problem " << p << " seed " << j;
    }
  }
  o.metric = KmeansMetric::cosine;  // on the unit sphere: seeds are unit points
  const ops::KmeansResult rc = ops::kmeans(ctx, x.on(MemorySpace::device), k, o);
  const std::vector<float> cc = rc.centroids.to_vector();
  for (int64_t j = 0; j < b * k; ++j) {
    double norm = 0;
    for (int64_t t = 0; t < d; ++t) norm += double(cc[size_t(j * d + t)]) * cc[size_t(j * d + t)];
    EXPECT_NEAR(norm, 1.0, 1e-5);
  }
}

TEST(GpuKmeansOps, OptionsAndLayoutsOffTheMainPath) {
  REQUIRE_DEVICE();
  Context ctx;
  // Inner product, a whole fit: labels are the largest dot products with the final centroids.
  const Points<f16> x(2, 2500, 33, 40, 81);
  KmeansOptions o;
  o.init = KmeansInit::random;
  o.metric = KmeansMetric::inner_product;
  o.max_iterations = 8;
  const ops::KmeansResult ip = ops::kmeans(ctx, x.on(MemorySpace::device), 30, o);
  const std::vector<float> ipc = ip.centroids.to_vector();
  const std::vector<int32_t> ipl = ip.labels.to_vector();
  for (int64_t p = 0; p < 2; ++p) {
    expect_labels(x.problem(p), ipc.data() + p * 30 * 33, 30, KmeansMetric::inner_product,
                  ipl.data() + p * 2500, "inner product fit");
  }
  // Given centroids with a row stride and a batch stride of their own (copied problem by
  // problem): fitted with no iterations, they come back as given.
  const int64_t k = 6, d = 33, ld = 36, stride = k * ld + 5;
  std::vector<float> strided(size_t(2 * stride), 0.0f);
  Rng rng(82);
  for (int64_t p = 0; p < 2; ++p) {
    for (int64_t j = 0; j < k; ++j) {
      for (int64_t t = 0; t < d; ++t) strided[size_t(p * stride + j * ld + t)] = float(rng.uniform(-1, 1));
    }
  }
  KmeansOptions g;
  g.init = KmeansInit::given;
  g.initial_centroids = {2, k, d, ld, stride, strided.data(), MemorySpace::host};
  g.max_iterations = 0;
  const std::vector<float> back = ops::kmeans(ctx, x.on(MemorySpace::device), k, g).centroids.to_vector();
  for (int64_t p = 0; p < 2; ++p) {
    for (int64_t j = 0; j < k; ++j) {
      for (int64_t t = 0; t < d; ++t) {
        ASSERT_EQ(back[size_t((p * k + j) * d + t)], strided[size_t(p * stride + j * ld + t)]);
      }
    }
  }
  // Stage profiling.
  g.max_iterations = 3;
  g.fixed_iterations = true;
  g.profile_stages = true;
  const ops::KmeansResult prof = ops::kmeans(ctx, x.on(MemorySpace::device), k, g);
  EXPECT_GT(prof.assign_seconds, 0);
  EXPECT_GT(prof.update_seconds, 0);
  EXPECT_EQ(prof.iterations, 3);
  // k-means|| on data with fewer distinct points than K: the candidates are topped up with other
  // points, and every seed is one of the points.
  Buffer<float> dup(size_t(400 * 4));
  for (int64_t i = 0; i < 400; ++i) {
    for (int64_t t = 0; t < 4; ++t) dup.data()[i * 4 + t] = float((i % 5) * 3 + t);
  }
  const Buffer<float> dup_dev = dup.to(MemorySpace::device);
  KmeansOptions pp;
  pp.init = KmeansInit::kmeans_plus_plus;
  pp.max_iterations = 2;
  const ops::KmeansResult r =
      ops::kmeans(ctx, contiguous_batch<const float>(dup_dev.data(), 1, 400, 4, MemorySpace::device), 8, pp);
  EXPECT_NEAR(r.inertia[0], 0.0, 1e-3) << "five distinct points, eight clusters";
}

TEST(GpuKmeansOps, WithoutTheFinalAssignmentConvergedProblemsKeepTheirLabels) {
  REQUIRE_DEVICE();
  Context ctx;
  // Problem 0: six distinct locations, started on them (converged after one update); problem 1:
  // uniform points from six of them (still improving after 8). Without the final assignment,
  // problem 0 keeps the labels of its converged centroids and problem 1 ends on an update.
  const int64_t n = 3000, d = 8, k = 6;
  Buffer<float> x(size_t(2 * n * d));
  std::vector<float> c0(size_t(2 * k * d));
  Rng rng(92);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t t = 0; t < d; ++t) x.data()[i * d + t] = float((i % k) * 2 + t);
  }
  for (int64_t i = 0; i < n * d; ++i) x.data()[n * d + i] = float(rng.uniform(-1, 1));
  for (int64_t j = 0; j < k; ++j) {
    for (int64_t t = 0; t < d; ++t) {
      c0[size_t(j * d + t)] = float(j * 2 + t);
      c0[size_t((k + j) * d + t)] = x.data()[(n + j) * d + t];
    }
  }
  const Buffer<float> xd = x.to(MemorySpace::device);
  KmeansOptions o;
  o.init = KmeansInit::given;
  o.initial_centroids = contiguous_batch<const float>(c0.data(), 2, k, d);
  o.max_iterations = 8;
  o.tolerance = 0;
  o.final_assignment = false;
  const ops::KmeansResult r =
      ops::kmeans(ctx, contiguous_batch<const float>(xd.data(), 2, n, d, MemorySpace::device), k, o);
  EXPECT_EQ(r.iterations, 8);
  EXPECT_EQ(r.inertia_history[0].size(), 2u) << "problem 0 converged after one update";
  EXPECT_EQ(r.inertia_history[1].size(), 8u) << "problem 1 went on to the end";
  const std::vector<float> c = r.centroids.to_vector();
  EXPECT_TRUE(std::equal(c.begin(), c.begin() + k * d, c0.begin())) << "problem 0 did not move";
  const std::vector<int32_t> l = r.labels.to_vector();
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(l[size_t(i)], i % k) << "point " << i;
}

TEST(GpuKmeansOps, StreamingFromHostMemoryMatchesTheInMemoryFit) {
  REQUIRE_DEVICE();
  Context ctx;
  const int64_t b = 2, n = 5300, d = 40, k = 37;  // 1000-point chunks: five full, one partial
  const Points<bf16> x(b, n, d, d + 3, 101, 12);
  const std::vector<float> c0 = random_centroids(b, k, d, 102);
  KmeansOptions o;
  o.init = KmeansInit::given;
  o.initial_centroids = contiguous_batch<const float>(c0.data(), b, k, d);
  o.max_iterations = 1;
  o.fixed_iterations = true;
  KmeansOptions s = o;
  s.gpu_streaming = true;
  s.stream_chunk_points = 1000;
  // One step: the same first assignment, then the float64 update of it.
  const ops::KmeansResult one = ops::kmeans(ctx, x.on(MemorySpace::host), k, s);
  EXPECT_EQ(one.centroids.space(), MemorySpace::host);
  EXPECT_EQ(one.iterations, 1);
  Buffer<int32_t> l0(size_t(b * n), MemorySpace::device);
  ops::kmeans_assign(ctx, x.on(MemorySpace::device), o.initial_centroids, KmeansMetric::l2,
                     l0.data());
  const std::vector<int32_t> labels0 = l0.to_vector();
  for (int64_t p = 0; p < b; ++p) {
    const std::vector<int32_t> lp(labels0.begin() + p * n, labels0.begin() + (p + 1) * n);
    const std::vector<double> want =
        reference::update64(x.problem(p), lp, k, std::vector<float>(c0.begin() + p * k * d, c0.begin() + (p + 1) * k * d),
                            KmeansMetric::l2);
    for (int64_t e = 0; e < k * d; ++e) {
      ASSERT_NEAR(one.centroids.data()[p * k * d + e], want[size_t(e)], 2e-5 * (1 + std::abs(want[size_t(e)])))
          << "problem " << p << " centroid " << e / d;
    }
    expect_labels(x.problem(p), one.centroids.data() + p * k * d, k, KmeansMetric::l2,
                  one.labels.data() + p * n, "streamed");
  }
  // Several iterations: the in-memory fit's result up to summation order; the same bits run to
  // run; and the same semantics without the final assignment.
  o.max_iterations = s.max_iterations = 6;
  const ops::KmeansResult mem = ops::kmeans(ctx, x.on(MemorySpace::device), k, o);
  const ops::KmeansResult st = ops::kmeans(ctx, x.on(MemorySpace::host), k, s);
  const ops::KmeansResult st2 = ops::kmeans(ctx, x.on(MemorySpace::host), k, s);
  EXPECT_EQ(st.centroids.to_vector(), st2.centroids.to_vector());
  EXPECT_EQ(st.labels.to_vector(), st2.labels.to_vector());
  // The same points with contiguous rows (one plain copy per chunk instead of a 2D one): same bits.
  const Points<bf16> contiguous(b, n, d, d, 101, 12);
  const ops::KmeansResult st_contiguous = ops::kmeans(ctx, contiguous.on(MemorySpace::host), k, s);
  EXPECT_EQ(st.centroids.to_vector(), st_contiguous.centroids.to_vector());
  EXPECT_EQ(st.labels.to_vector(), st_contiguous.labels.to_vector());
  // Labels kept on the device (the default here) or copied with every chunk: the same bits.
  ops::KmeansResult st_host_labels;
  {
    const ScopedEnv host_labels("TESSERA_KMEANS_STREAM_LABELS", "host");  // per-chunk labels
    st_host_labels = ops::kmeans(ctx, x.on(MemorySpace::host), k, s);
  }
  EXPECT_EQ(st.centroids.to_vector(), st_host_labels.centroids.to_vector());
  EXPECT_EQ(st.labels.to_vector(), st_host_labels.labels.to_vector());
  EXPECT_EQ(st.inertia_history, st_host_labels.inertia_history);
  const std::vector<int32_t> ml = mem.labels.to_vector();
  int64_t same = 0;
  for (int64_t i = 0; i < b * n; ++i) same += ml[size_t(i)] == st.labels.data()[i];
  EXPECT_GE(double(same), 0.999 * double(b * n));
  for (int64_t p = 0; p < b; ++p) {
    EXPECT_NEAR(st.inertia[size_t(p)], mem.inertia[size_t(p)], 1e-4 * mem.inertia[size_t(p)]);
    EXPECT_EQ(st.inertia_history[size_t(p)].size(), 7u);
    int64_t total = 0;
    for (int64_t j = 0; j < k; ++j) total += st.counts.data()[p * k + j];
    EXPECT_EQ(total, n);
  }
  s.final_assignment = false;
  const ops::KmeansResult nf = ops::kmeans(ctx, x.on(MemorySpace::host), k, s);
  EXPECT_EQ(nf.iterations, 6);
  EXPECT_EQ(nf.inertia_history[0].size(), 6u);
  // A NaN in the fourth chunk, named by its place in X.
  Points<float> bad(1, 3000, 8, 8, 103);
  bad.host.data()[2345 * 8 + 5] = NAN;
  KmeansOptions r;
  r.init = KmeansInit::given;
  std::vector<float> c(size_t(4 * 8), 0.5f);
  for (size_t i = 0; i < c.size(); ++i) c[i] = float(i % 7) * 0.1f;
  r.initial_centroids = contiguous_batch<const float>(c.data(), 1, 4, 8);
  r.gpu_streaming = true;
  r.stream_chunk_points = 700;
  EXPECT_THAT(error_of([&] { ops::kmeans(ctx, bad.on(MemorySpace::host), 4, r); }),
              HasSubstr("X[0][2345][5] is NaN or Inf"));
  const Points<float> fine(1, 3000, 8, 8, 104);
  r.empty_clusters = EmptyClusters::reseed_farthest;
  EXPECT_THAT(error_of([&] { ops::kmeans(ctx, fine.on(MemorySpace::host), 4, r); }),
              HasSubstr("reseed_farthest"));
}

TEST(GpuKmeansOps, TiesAcrossCentroidTilesGoToTheLowerIndex) {
  REQUIRE_DEVICE();
  Context ctx;
  const int64_t n = 300, d = 16, k = 300;
  std::vector<float> c = random_centroids(1, k, d, 3);
  // Centroid 260 (third tile) copies centroid 5, centroid 140 (second tile) copies 70.
  std::copy(c.begin() + 5 * d, c.begin() + 6 * d, c.begin() + 260 * d);
  std::copy(c.begin() + 70 * d, c.begin() + 71 * d, c.begin() + 140 * d);
  Buffer<float> xs(size_t(n * d));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t src = i % 2 ? 260 : 140;
    std::copy(c.begin() + src * d, c.begin() + (src + 1) * d, xs.data() + i * d);
  }
  const Buffer<float> xd = xs.to(MemorySpace::device);
  for (const char* kernel : kAssignKernels) {
  const AssignKernel choice(kernel);
  for (KmeansMetric metric : {KmeansMetric::l2, KmeansMetric::cosine, KmeansMetric::inner_product}) {
    Buffer<int32_t> labels(size_t(n), MemorySpace::device);
    ops::kmeans_assign(ctx, contiguous_batch<const float>(xd.data(), 1, n, d, MemorySpace::device),
                       contiguous_batch<const float>(c.data(), 1, k, d), metric, labels.data());
    const std::vector<int32_t> got = labels.to_vector();
    if (metric == KmeansMetric::inner_product) {  // the largest dot need not be the copy itself
      for (int64_t i = 0; i < n; ++i) EXPECT_NE(got[size_t(i)], i % 2 ? 260 : 140);
      continue;
    }
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[size_t(i)], i % 2 ? 5 : 70) << "point " << i;
  }
  }
}

TEST(GpuKmeansOps, EmptyClustersKeepOrTakeTheFarthestPoints) {
  REQUIRE_DEVICE();
  Context ctx;
  const int64_t n = 1000, d = 8, k = 6;
  const Points<float> x(1, n, d, d, 12);
  std::vector<float> c0 = random_centroids(1, k, d, 13);
  for (int64_t t = 0; t < d; ++t) c0[size_t(2 * d + t)] = 50, c0[size_t(4 * d + t)] = -60;
  KmeansOptions o;
  o.init = KmeansInit::given;
  o.initial_centroids = contiguous_batch<const float>(c0.data(), 1, k, d);
  o.max_iterations = 1;
  o.fixed_iterations = true;
  const ops::KmeansResult keep = ops::kmeans(ctx, x.on(MemorySpace::device), k, o);
  const std::vector<float> kc = keep.centroids.to_vector();
  for (int64_t t = 0; t < d; ++t) {
    EXPECT_EQ(kc[size_t(2 * d + t)], 50.0f);
    EXPECT_EQ(kc[size_t(4 * d + t)], -60.0f);
  }
  // Reseed: clusters 2 and 4 take the farthest and second-farthest points of iteration 0.
  Buffer<float> dist(size_t(n), MemorySpace::device);
  Buffer<int32_t> l0(size_t(n), MemorySpace::device);
  ops::kmeans_assign(ctx, x.on(MemorySpace::device), contiguous_batch<const float>(c0.data(), 1, k, d),
                     KmeansMetric::l2, l0.data(), dist.data());
  const std::vector<float> dv = dist.to_vector();
  std::vector<int64_t> by(static_cast<size_t>(n));
  std::iota(by.begin(), by.end(), 0);
  std::stable_sort(by.begin(), by.end(), [&](int64_t a, int64_t b) { return dv[size_t(a)] > dv[size_t(b)]; });
  o.empty_clusters = EmptyClusters::reseed_farthest;
  const ops::KmeansResult re = ops::kmeans(ctx, x.on(MemorySpace::device), k, o);
  const std::vector<float> rc = re.centroids.to_vector();
  for (int64_t t = 0; t < d; ++t) {
    EXPECT_EQ(rc[size_t(2 * d + t)], x.host.data()[by[0] * d + t]);
    EXPECT_EQ(rc[size_t(4 * d + t)], x.host.data()[by[1] * d + t]);
  }
}

TEST(GpuKmeansOps, KMeansObjectWarmStartsAndPredictsOnTheDevice) {
  REQUIRE_DEVICE();
  Context ctx;
  const Points<bf16> x(2, 3000, 40, 40, 21, 8);
  KmeansOptions o;
  o.init = KmeansInit::random;
  o.max_iterations = 3;
  ops::KMeans km(8, o);
  const ops::KmeansResult& first = km.fit(ctx, x.on(MemorySpace::device));
  const std::vector<double> after_first = first.inertia;
  const ops::KmeansResult& second = km.fit(ctx, x.on(MemorySpace::device));
  for (size_t p = 0; p < 2; ++p) {
    EXPECT_LE(second.inertia_history[p][0], after_first[p] * (1 + 1e-2)) << "warm start";
  }
  const std::vector<int32_t> predicted = km.predict(ctx, x.on(MemorySpace::device));
  EXPECT_EQ(predicted, km.result().labels.to_vector());
  // The held (device) centroids serve host points too: the CPU path against the same centroids.
  const std::vector<int32_t> on_host = km.predict(ctx, x.on(MemorySpace::host));
  const std::vector<float> c = km.result().centroids.to_vector();
  for (int64_t p = 0; p < 2; ++p) {
    const reference::LabelCheck lc = reference::check_labels(
        x.problem(p), c.data() + p * 8 * 40, 8, KmeansMetric::l2, on_host.data() + p * 3000);
    EXPECT_EQ(lc.failures, 0) << "problem " << p;
  }
  // And a host fit warm-starts from them (they are read through a host copy).
  const std::vector<double> before_host = km.result().inertia;
  const ops::KmeansResult& third = km.fit(ctx, x.on(MemorySpace::host));
  EXPECT_EQ(third.centroids.space(), MemorySpace::host);
  for (size_t p = 0; p < 2; ++p) {
    EXPECT_LE(third.inertia_history[p][0], before_host[p] * (1 + 1e-2)) << "warm start on the host";
  }
}

TEST(GpuKmeansOps, BadInputGetsClearErrors) {
  REQUIRE_DEVICE();
  Context ctx;
  Points<float> x(2, 50, 7, 7, 1);
  x.host.data()[(1 * 50 + 13) * 7 + 4] = NAN;
  const Buffer<float> bad = x.host.to(MemorySpace::device);
  const BatchedDenseView<const float> bv{2, 50, 7, 7, 350, bad.data(), MemorySpace::device};
  KmeansOptions o;
  o.init = KmeansInit::random;
  EXPECT_THAT(error_of([&] { ops::kmeans(ctx, bv, 3, o); }), HasSubstr("X[1][13][4]"));
  const Points<float> good(1, 50, 7, 7, 2);
  EXPECT_THAT(error_of([&] { ops::kmeans(ctx, good.on(MemorySpace::device), 51, o); }),
              HasSubstr("exceeds the 50 points"));
  EXPECT_THAT(error_of([&] { ops::kmeans(ctx, good.on(MemorySpace::device), 0, o); }),
              HasSubstr("must be positive"));
  Buffer<float> zero(size_t(50 * 7), 0.0f);
  for (size_t i = 7; i < zero.size(); ++i) zero.data()[i] = 1.0f;
  const Buffer<float> zd = zero.to(MemorySpace::device);
  o.metric = KmeansMetric::cosine;
  EXPECT_THAT(error_of([&] {
                ops::kmeans(ctx, contiguous_batch<const float>(zd.data(), 1, 50, 7, MemorySpace::device), 3, o);
              }),
              HasSubstr("X[0][0] is the zero vector"));
  o.metric = KmeansMetric::l2;
  o.init = KmeansInit::given;
  const std::vector<float> c(size_t(4 * 7), 0.5f);
  o.initial_centroids = contiguous_batch<const float>(c.data(), 1, 4, 7);
  EXPECT_THAT(error_of([&] { ops::kmeans(ctx, good.on(MemorySpace::device), 3, o); }),
              HasSubstr("centroids are [1, 4, 7] but the problem needs [1, 3, 7]"));
  std::vector<float> nan_c(size_t(3 * 7), 0.25f);
  nan_c[size_t(1 * 7 + 2)] = NAN;
  o.initial_centroids = contiguous_batch<const float>(nan_c.data(), 1, 3, 7);
  EXPECT_THAT(error_of([&] { ops::kmeans(ctx, good.on(MemorySpace::device), 3, o); }),
              HasSubstr("centroid [0][1][2] is NaN or Inf"));
  // A NaN in X with given centroids is X's error, not the centroids'.
  Points<float> bad_given(1, 50, 7, 7, 4);
  bad_given.host.data()[3 * 7 + 1] = NAN;
  bad_given.dev = bad_given.host.to(MemorySpace::device);
  std::vector<float> fine(size_t(3 * 7), 0.5f);
  o.initial_centroids = contiguous_batch<const float>(fine.data(), 1, 3, 7);
  EXPECT_THAT(error_of([&] { ops::kmeans(ctx, bad_given.on(MemorySpace::device), 3, o); }),
              HasSubstr("kmeans: X[0][3][1] is NaN or Inf"));
  // Norms f32 distances cannot hold: refused, not a point without a label.
  Points<float> huge(1, 50, 7, 7, 5);
  huge.host.data()[10 * 7] = 4e18f;
  huge.dev = huge.host.to(MemorySpace::device);
  EXPECT_THAT(error_of([&] { ops::kmeans(ctx, huge.on(MemorySpace::device), 3, o); }),
              HasSubstr("X[0][10] has a squared norm over"));
  // Outputs of a device assignment must be device memory.
  std::vector<int32_t> host_labels(50);
  EXPECT_THAT(error_of([&] {
                ops::kmeans_assign(ctx, good.on(MemorySpace::device),
                                   contiguous_batch<const float>(fine.data(), 1, 3, 7),
                                   KmeansMetric::l2, host_labels.data());
              }),
              HasSubstr("must be too (got a host pointer)"));
  const int64_t too_wide = ops::kmeans_max_device_dimension<float>() + 1;
  const Points<float> wide(1, 4, too_wide, too_wide, 3);
  o.init = KmeansInit::random;
  EXPECT_THAT(error_of([&] { ops::kmeans(ctx, wide.on(MemorySpace::device), 2, o); }),
              HasSubstr("kmeans: D = " + std::to_string(too_wide) + " "));
}

void expect_same_result(const ops::KmeansResult& a, const ops::KmeansResult& b,
                        const std::string& what) {
  EXPECT_EQ(a.centroids.to_vector(), b.centroids.to_vector()) << what;
  EXPECT_EQ(a.labels.to_vector(), b.labels.to_vector()) << what;
  EXPECT_EQ(a.counts.to_vector(), b.counts.to_vector()) << what;
  EXPECT_EQ(a.inertia, b.inertia) << what;
  EXPECT_EQ(a.inertia_history, b.inertia_history) << what;
  EXPECT_EQ(a.iterations, b.iterations) << what;
}

// On 16-bit l2 problems with 16-byte rows a fit's first assignment computes the point norms and
// their checks from its resident tile (one read of X less than the separate pass, which
// TESSERA_KMEANS_FUSED_NORMS=0 keeps): the same summation order, so the same bits everywhere;
// points past the last tile, padding past D and strided rows included.
template <class V>
void expect_fused_norms_match_the_pass() {
  Context ctx;
  struct Shape { int64_t b, n, d, ld; };
  for (const Shape s : {Shape{3, 1000, 24, 24}, Shape{2, 777, 136, 144}, Shape{1, 129, 8, 8}}) {
    const Points<V> x(s.b, s.n, s.d, s.ld, 31 + uint64_t(s.d), 9);
    const int64_t k = 13;
    const std::vector<float> c0 = random_centroids(s.b, k, s.d, 32);
    for (const bool given : {false, true}) {
      for (const int iterations : {0, 3}) {
        for (const bool final_assignment : {true, false}) {
          if (iterations == 0 && !final_assignment) continue;
          KmeansOptions o;
          o.init = given ? KmeansInit::given : KmeansInit::random;
          o.initial_centroids = contiguous_batch<const float>(c0.data(), s.b, k, s.d);
          o.seed = 3;
          o.max_iterations = iterations;
          o.final_assignment = final_assignment;
          const ops::KmeansResult fused = ops::kmeans(ctx, x.on(MemorySpace::device), k, o);
          ScopedEnv pass("TESSERA_KMEANS_FUSED_NORMS", "0");
          const ops::KmeansResult separate = ops::kmeans(ctx, x.on(MemorySpace::device), k, o);
          expect_same_result(fused, separate,
                             "D = " + std::to_string(s.d) + (given ? " given" : " random") +
                                 ", " + std::to_string(iterations) + " iterations" +
                                 (final_assignment ? "" : ", no final assignment"));
        }
      }
    }
  }
}

TEST(GpuKmeansOps, NormsFromTheFirstAssignmentEqualTheSeparatePass) {
  REQUIRE_DEVICE();
  expect_fused_norms_match_the_pass<bf16>();
  expect_fused_norms_match_the_pass<f16>();
}

// Bad points found by the first assignment's norms get the separate pass's errors, the first in
// X's order, and a fit into a held result leaves it as it was.
TEST(GpuKmeansOps, NormsFromTheFirstAssignmentRefuseBadPointsAndKeepTheHeldResult) {
  REQUIRE_DEVICE();
  Context ctx;
  const int64_t b = 2, n = 300, d = 24, k = 5;
  const Points<bf16> good(b, n, d, d, 41, 5);
  const std::vector<float> c0 = random_centroids(b, k, d, 42);
  KmeansOptions o;
  o.init = KmeansInit::given;
  o.initial_centroids = contiguous_batch<const float>(c0.data(), b, k, d);
  o.max_iterations = 4;
  ops::KmeansResult held;
  ops::kmeans(ctx, good.on(MemorySpace::device), k, o, held);
  const std::vector<float> held_centroids = held.centroids.to_vector();
  const std::vector<int32_t> held_labels = held.labels.to_vector();
  const std::vector<double> held_inertia = held.inertia;
  struct Bad { std::vector<std::pair<int64_t, float>> at; std::string error; };
  auto flat = [&](int64_t p, int64_t i, int64_t col) { return (p * n + i) * d + col; };
  const Bad cases[] = {
      {{{flat(1, 213, 5), NAN}}, "kmeans: X[1][213][5] is NaN or Inf"},
      {{{flat(0, 7, 23), INFINITY}}, "kmeans: X[0][7][23] is NaN or Inf"},
      {{{flat(1, 5, 0), NAN}, {flat(0, 100, 3), -INFINITY}}, "kmeans: X[0][100][3] is NaN"},
      {{{flat(1, 20, 0), 4e18f}}, "kmeans: X[1][20] has a squared norm over"},
  };
  for (const Bad& bad : cases) {
    Points<bf16> x(b, n, d, d, 41, 5);
    for (const auto& [i, v] : bad.at) x.host.data()[i] = from_float<bf16>(v);
    x.dev = x.host.to(MemorySpace::device);
    for (const bool fused : {true, false}) {
      ScopedEnv choice("TESSERA_KMEANS_FUSED_NORMS", fused ? "1" : "0");
      for (const KmeansInit init : {KmeansInit::given, KmeansInit::random}) {
        KmeansOptions oi = o;
        oi.init = init;
        EXPECT_THAT(error_of([&] { ops::kmeans(ctx, x.on(MemorySpace::device), k, oi, held); }),
                    HasSubstr(bad.error))
            << (fused ? "fused" : "separate pass");
        EXPECT_EQ(held.centroids.to_vector(), held_centroids) << bad.error;
        EXPECT_EQ(held.labels.to_vector(), held_labels) << bad.error;
        EXPECT_EQ(held.inertia, held_inertia) << bad.error;
      }
    }
  }
}

// With K <= 256 and B * K > 256 the update sorts the labels alone (one radix pass of 8 bits, where
// b * K + label takes two), its segments then in (label, problem) order: the same chunks and sums,
// so the same bits as the keys b * K + label (TESSERA_KMEANS_LABEL_KEYS=0), with 16-bit and 32-bit
// keys, cosine and re-seeded empty clusters.
TEST(GpuKmeansOps, LabelMajorSortKeysGiveTheSameBits) {
  REQUIRE_DEVICE();
  Context ctx;
  struct Shape { int64_t b, n, d, k; };
  for (const Shape s : {Shape{33, 700, 24, 50}, Shape{300, 260, 8, 250}, Shape{2, 3000, 20, 200}}) {
    const Points<f16> x(s.b, s.n, s.d, s.d, 51 + uint64_t(s.k), 7);
    for (const KmeansMetric metric : {KmeansMetric::l2, KmeansMetric::cosine}) {
      KmeansOptions o;
      o.init = KmeansInit::random;
      o.seed = 4;
      o.max_iterations = 5;
      o.metric = metric;
      o.empty_clusters = metric == KmeansMetric::l2 ? EmptyClusters::reseed_farthest
                                                    : EmptyClusters::keep_centroid;
      const ops::KmeansResult label_major = ops::kmeans(ctx, x.on(MemorySpace::device), s.k, o);
      ScopedEnv cluster_major("TESSERA_KMEANS_LABEL_KEYS", "0");
      const ops::KmeansResult by_cluster = ops::kmeans(ctx, x.on(MemorySpace::device), s.k, o);
      expect_same_result(label_major, by_cluster,
                         "B = " + std::to_string(s.b) + ", K = " + std::to_string(s.k) + " " +
                             ops::to_string(metric));
    }
  }
}

// 16-bit rows with 16-byte alignment reach the wgmma kernel's shared memory by tensor-map copies
// (zeros past the last point and past D from the map's bounds) or, with
// TESSERA_KMEANS_TENSOR_ROWS=0, by cp.async (zeros written explicitly): the same tile, so the same
// bits. Partial tiles, a problem smaller than a warpgroup's 64 rows, D with a partial column
// block, strided rows, both block sizes, the three metrics, the fused norms and kmeans_assign.
template <class V>
void expect_tensor_rows_match_cp_async() {
  Context ctx;
  const ScopedEnv tensor_rows("TESSERA_KMEANS_TENSOR_ROWS", nullptr);  // the default, whatever is set
  struct Shape { int64_t b, n, d, ld, k; };
  for (const char* kernel : {static_cast<const char*>(nullptr), "wgmma256"}) {
    const AssignKernel choice(kernel);
    for (const Shape s : {Shape{3, 1000, 24, 24, 40}, Shape{2, 777, 136, 144, 300},
                          Shape{5, 50, 8, 8, 7}, Shape{1, 4100, 64, 72, 129}}) {
      const Points<V> x(s.b, s.n, s.d, s.ld, 61 + uint64_t(s.d), 6);
      const std::vector<float> c0 = random_centroids(s.b, s.k, s.d, 62);
      const std::string what = std::string(kernel ? kernel : "default") + ", B = " +
                               std::to_string(s.b) + ", n = " + std::to_string(s.n) + ", D = " +
                               std::to_string(s.d);
      for (const KmeansMetric metric :
           {KmeansMetric::l2, KmeansMetric::cosine, KmeansMetric::inner_product}) {
        KmeansOptions o;
        o.init = KmeansInit::given;
        o.initial_centroids = contiguous_batch<const float>(c0.data(), s.b, s.k, s.d);
        o.max_iterations = 3;
        o.metric = metric;
        const ops::KmeansResult tensor = ops::kmeans(ctx, x.on(MemorySpace::device), s.k, o);
        ScopedEnv cp_async("TESSERA_KMEANS_TENSOR_ROWS", "0");
        const ops::KmeansResult copied = ops::kmeans(ctx, x.on(MemorySpace::device), s.k, o);
        expect_same_result(tensor, copied, what + " " + ops::to_string(metric));
      }
      const Buffer<float> c(c0, MemorySpace::device);
      const auto centroids =
          contiguous_batch<const float>(c.data(), s.b, s.k, s.d, MemorySpace::device);
      Buffer<int32_t> labels[2];
      Buffer<float> distances[2];
      for (int pass = 0; pass < 2; ++pass) {
        ScopedEnv rows("TESSERA_KMEANS_TENSOR_ROWS", pass == 0 ? nullptr : "0");
        labels[pass] = Buffer<int32_t>(size_t(s.b * s.n), MemorySpace::device);
        distances[pass] = Buffer<float>(size_t(s.b * s.n), MemorySpace::device);
        ops::kmeans_assign(ctx, x.on(MemorySpace::device), centroids, KmeansMetric::l2,
                           labels[pass].data(), distances[pass].data());
      }
      EXPECT_EQ(labels[0].to_vector(), labels[1].to_vector()) << what << " kmeans_assign";
      EXPECT_EQ(distances[0].to_vector(), distances[1].to_vector()) << what << " kmeans_assign";
    }
  }
}

// True when the driver has cuTensorMapEncodeTiled, the tensor-map rows' encoder (without it both
// sides of the test below would take cp.async, and it would compare a path with itself).
bool driver_has_tensor_map_encoder() {
#if TESSERA_WITH_CUDA
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found{};
#if CUDART_VERSION >= 12050
  const cudaError_t status =
      cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found);
#else
  const cudaError_t status = cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &fn, cudaEnableDefault, &found);
#endif
  cudaGetLastError();
  return status == cudaSuccess && found == cudaDriverEntryPointSuccess && fn != nullptr;
#else
  return false;
#endif
}

TEST(GpuKmeansOps, TensorMapRowsGiveTheSameBitsAsCpAsync) {
  REQUIRE_DEVICE();
  if (!driver_has_tensor_map_encoder()) {
    GTEST_SKIP() << "the driver has no cuTensorMapEncodeTiled: the tensor-map rows cannot run here";
  }
  expect_tensor_rows_match_cp_async<bf16>();
  expect_tensor_rows_match_cp_async<f16>();
}

TEST(GpuKmeansOps, RealSiftVectors) {
  REQUIRE_DEVICE();
  namespace fs = std::filesystem;
  const fs::path path = fs::path(testing::shared_data_dir()) / "ann" / "ngt_sift5k" / "sift5k_base.fvecs";
  if (!fs::exists(path)) GTEST_SKIP() << path << " is absent";
  if (!gpu_takes<float>(128)) GTEST_SKIP() << "this GPU's k-means path takes f32 D up to "
                                           << ops::kmeans_max_device_dimension<float>();
  const DenseMatrix<float> sift = read_vecs<float>(path.string());
  Context ctx;
  const Buffer<float> dev = sift.buffer().to(MemorySpace::device);
  const auto x = contiguous_batch<const float>(dev.data(), 1, sift.rows(), sift.cols(), MemorySpace::device);
  KmeansOptions o;
  o.init = KmeansInit::kmeans_plus_plus;
  o.max_iterations = 20;
  const ops::KmeansResult r = ops::kmeans(ctx, x, 64, o);
  const std::vector<float> c = r.centroids.to_vector();
  const std::vector<int32_t> labels = r.labels.to_vector();
  expect_labels(DenseView<const float>{sift.rows(), sift.cols(), sift.cols(), sift.data()}, c.data(), 64,
                KmeansMetric::l2, labels.data(), "sift");
  const auto& h = r.inertia_history[0];
  for (size_t t = 1; t < h.size(); ++t) EXPECT_LE(h[t], h[t - 1] * (1 + 1e-3));
  EXPECT_LT(h.back(), 0.8 * h.front());
}

}  // namespace
}  // namespace tessera
