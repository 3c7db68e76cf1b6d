// ops::kmeans on the CPU against the float64 reference: assignment, the Lloyd update, the loop's
// guarantees (inertia never increases, determinism across thread counts, batches equal their
// problems run alone), empty-cluster policies, low-precision inputs, bad input and real SIFT data.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "core/dense.h"
#include "core/device.h"
#include "core/random.h"
#include "formats/io.h"
#include "ops/kmeans/kmeans.h"
#include "ops/kmeans/kmeans_cpu.h"
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


// n points around k well-separated centres (spread 0.05, centres ~10 apart); truth[i] is the
// centre.
DenseMatrix<float> blobs(int64_t n, int64_t d, int64_t k, uint64_t seed,
                         std::vector<int32_t>* truth) {
  Rng rng(seed);
  std::vector<float> centres(size_t(k * d));
  for (float& c : centres) c = float(rng.uniform(-30, 30));
  DenseMatrix<float> x(n, d);
  truth->resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int32_t c = int32_t(rng.below(uint64_t(k)));
    (*truth)[size_t(i)] = c;
    for (int64_t t = 0; t < d; ++t)
      x(i, t) = centres[size_t(c * d + t)] + float(rng.uniform(-0.05, 0.05));
  }
  return x;
}

// Labels equal the reference's except where the two centroids' float64 distances tie within
// rounding; returns how many differ.
template <class V>
int64_t expect_labels_match(const DenseView<const V>& x, const float* centroids, int64_t k,
                            KmeansMetric metric, const int32_t* labels) {
  const reference::LabelCheck r = reference::check_labels(x, centroids, k, metric, labels);
  EXPECT_EQ(r.failures, 0) << "first at point " << r.first_failure << " (label "
                           << (r.first_failure >= 0 ? labels[r.first_failure] : -1) << ")";
  const int64_t differ = r.near_ties + r.failures;
  EXPECT_LE(differ, std::max<int64_t>(2, x.rows / 100));
  return differ;
}

// With no GPU visible (CI, or a CUDA build on a machine without one) the GPU path takes nothing,
// and saying so must not need a device.
TEST(Kmeans, MaxDeviceDimensionIsZeroWithoutAGpu) {
  if (device::available()) GTEST_SKIP() << "a GPU is visible (test_gpu_kmeans covers this)";
  EXPECT_EQ(ops::kmeans_max_device_dimension<float>(), 0);
  EXPECT_EQ(ops::kmeans_max_device_dimension<bf16>(), 0);
  EXPECT_EQ(ops::kmeans_max_device_dimension<f16>(), 0);
}

TEST(Kmeans, BlockKernelsMatchTheReferenceOnOddShapes) {
  for (int64_t d : {1, 3, 37, 128, 129}) {
    for (int64_t k : {1, 7, 300}) {  // 300: more than one centroid tile
      const DenseMatrix<float> x =
          uniform_dense<float>(ops::kmeans_cpu::kPointBlock - 3, d, 100 + d);
      const DenseMatrix<float> c = uniform_dense<float>(k, d, 200 + k);
      std::vector<float> norms(static_cast<size_t>(k));
      for (int64_t j = 0; j < k; ++j) {
        double s = 0;
        for (int64_t t = 0; t < d; ++t) s += double(c(j, t)) * c(j, t);
        norms[size_t(j)] = float(s);
      }
      const ops::kmeans_cpu::CentroidTable table{c.data(), norms.data(), k, d};
      for (bool l2 : {true, false}) {
        std::vector<int32_t> a(size_t(x.rows())), b(size_t(x.rows()));
        std::vector<float> ka(size_t(x.rows())), kb(size_t(x.rows()));
        std::vector<float> scratch(
            size_t(ops::kmeans_cpu::kPointBlock * ops::kmeans_cpu::kCentroidTile));
        ops::kmeans_cpu::argmin_block_portable(x.data(), x.rows(), table, l2, a.data(), ka.data());
        if (ops::kmeans_cpu::gemm_kernel_usable()) {
          ops::kmeans_cpu::argmin_block_gemm(x.data(), x.rows(), table, l2, b.data(), kb.data(),
                                             scratch.data());
        } else {
          b = a;
        }
        const KmeansMetric metric = l2 ? KmeansMetric::l2 : KmeansMetric::inner_product;
        SCOPED_TRACE("d=" + std::to_string(d) + " k=" + std::to_string(k) + (l2 ? " l2" : " ip"));
        expect_labels_match(x.view(), c.data(), k, metric, a.data());
        expect_labels_match(x.view(), c.data(), k, metric, b.data());
      }
    }
  }
}

TEST(Kmeans, TiesGoToTheLowerIndex) {
  // Centroid 300 (second tile) repeats centroid 5, centroid 9 repeats centroid 2.
  const int64_t d = 8, k = 301;
  DenseMatrix<float> c = uniform_dense<float>(k, d, 21);
  for (int64_t t = 0; t < d; ++t) c(300, t) = c(5, t), c(9, t) = c(2, t);
  std::vector<float> norms(static_cast<size_t>(k));
  for (int64_t j = 0; j < k; ++j) {
    double s = 0;
    for (int64_t t = 0; t < d; ++t) s += double(c(j, t)) * c(j, t);
    norms[size_t(j)] = float(s);
  }
  DenseMatrix<float> x(4, d);
  for (int64_t t = 0; t < d; ++t)
    x(0, t) = c(5, t), x(1, t) = c(2, t), x(2, t) = c(5, t) * 1.001f, x(3, t) = c(2, t);
  const ops::kmeans_cpu::CentroidTable table{c.data(), norms.data(), k, d};
  std::vector<float> key(4),
      scratch(static_cast<size_t>(ops::kmeans_cpu::kPointBlock * ops::kmeans_cpu::kCentroidTile));
  for (bool l2 : {true, false}) {
    std::vector<int32_t> a(4), b(4);
    ops::kmeans_cpu::argmin_block_portable(x.data(), 4, table, l2, a.data(), key.data());
    b = a;
    if (ops::kmeans_cpu::gemm_kernel_usable()) {
      ops::kmeans_cpu::argmin_block_gemm(x.data(), 4, table, l2, b.data(), key.data(),
                                         scratch.data());
    }
    for (const auto& labels : {a, b}) {
      for (int32_t l : labels)
        EXPECT_TRUE(l != 300 && l != 9) << "label " << l << (l2 ? " l2" : " ip");
    }
  }
}

TEST(Kmeans, AssignMatchesTheReferenceForEveryMetric) {
  Context ctx;
  const int64_t n = 1000, d = 37, k = 50;
  const DenseMatrix<float> x = uniform_dense<float>(n, d, 1);
  const DenseMatrix<float> c = uniform_dense<float>(k, d, 2);
  for (KmeansMetric metric :
       {KmeansMetric::l2, KmeansMetric::cosine, KmeansMetric::inner_product}) {
    SCOPED_TRACE(ops::to_string(metric));
    std::vector<int32_t> labels(static_cast<size_t>(n));
    std::vector<float> dist(static_cast<size_t>(n));
    ops::kmeans_assign<float>(ctx, batch_of_one(x.view()), batch_of_one(c.view()), metric,
                              labels.data(), dist.data());
    expect_labels_match(x.view(), c.data(), k, metric, labels.data());
    const std::vector<float> pc = reference::prepared_centroids(c.data(), k, d, metric);
    for (int64_t i = 0; i < n; ++i) {
      const double want = reference::distance64(reference::point64(x.view(), i, metric),
                                                pc.data() + labels[size_t(i)] * d, metric);
      EXPECT_NEAR(dist[size_t(i)], want, 1e-4 * (1 + std::abs(want))) << i;
    }
  }
}

TEST(Kmeans, OneLloydStepMatchesTheReferenceUpdate) {
  Context ctx;
  const int64_t n = 3001, d = 19, k = 40;  // n not a multiple of the point block
  const DenseMatrix<float> x = uniform_dense<float>(n, d, 3);
  const DenseMatrix<float> c0 = uniform_dense<float>(k, d, 4);
  for (KmeansMetric metric :
       {KmeansMetric::l2, KmeansMetric::cosine, KmeansMetric::inner_product}) {
    SCOPED_TRACE(ops::to_string(metric));
    KmeansOptions o;
    o.init = KmeansInit::given;
    o.initial_centroids = batch_of_one(c0.view());
    o.metric = metric;
    o.tolerance = 0;
    o.max_iterations = 0;  // labels of the initial centroids
    const ops::KmeansResult r0 = ops::kmeans<float>(ctx, batch_of_one(x.view()), k, o);
    EXPECT_EQ(r0.iterations, 0);
    o.max_iterations = 1;
    const ops::KmeansResult r1 = ops::kmeans<float>(ctx, batch_of_one(x.view()), k, o);
    const std::vector<int32_t> labels0 = r0.labels.to_vector();
    const std::vector<double> want = reference::update64(
        x.view(), labels0, k, reference::prepared_centroids(c0.data(), k, d, metric), metric);
    for (int64_t i = 0; i < k * d; ++i)
      EXPECT_NEAR(r1.centroids[size_t(i)], want[size_t(i)], 1e-5) << i;
    // The returned labels belong to the returned centroids, and counts to the labels.
    expect_labels_match(x.view(), r1.centroids.data(), k, metric, r1.labels.data());
    std::vector<int64_t> counts(size_t(k), 0);
    for (int32_t l : r1.labels.to_vector()) ++counts[size_t(l)];
    EXPECT_EQ(r1.counts.to_vector(), counts);
  }
}

TEST(Kmeans, RecoversSeparatedClustersAndInertiaNeverIncreases) {
  Context ctx;
  std::vector<int32_t> truth;
  const DenseMatrix<float> x = blobs(2000, 5, 8, 5, &truth);
  for (KmeansInit init : {KmeansInit::random, KmeansInit::kmeans_plus_plus}) {
    KmeansOptions o;
    o.init = init;
    o.seed = 11;
    const ops::KmeansResult r = ops::kmeans<float>(ctx, batch_of_one(x.view()), 8, o);
    if (init == KmeansInit::kmeans_plus_plus) {  // D^2 seeding finds every blob here
      std::set<std::pair<int32_t, int32_t>> pairs;
      for (int64_t i = 0; i < 2000; ++i) pairs.insert({truth[size_t(i)], r.labels[size_t(i)]});
      EXPECT_EQ(pairs.size(), 8u) << "each blob maps to exactly one cluster";
      EXPECT_LT(r.inertia[0] / 2000, 5 * 0.05 * 0.05);
    }
    const std::vector<double>& h = r.inertia_history[0];
    ASSERT_EQ(h.size(), size_t(r.iterations) + 1);
    for (size_t t = 1; t < h.size(); ++t) EXPECT_LE(h[t], h[t - 1] * (1 + 1e-6)) << t;
    EXPECT_DOUBLE_EQ(h.back(), r.inertia[0]);
  }
  // Uniform data (no clear clusters), every metric with a monotone objective.
  const DenseMatrix<float> u = uniform_dense<float>(1500, 12, 6);
  for (KmeansMetric metric : {KmeansMetric::l2, KmeansMetric::cosine}) {
    KmeansOptions o;
    o.metric = metric;
    o.tolerance = 0;
    o.max_iterations = 40;
    const ops::KmeansResult r = ops::kmeans<float>(ctx, batch_of_one(u.view()), 30, o);
    const std::vector<double>& h = r.inertia_history[0];
    EXPECT_GT(h.size(), 3u);
    for (size_t t = 1; t < h.size(); ++t)
      EXPECT_LE(h[t], h[t - 1] * (1 + 1e-6)) << ops::to_string(metric) << " " << t;
    if (metric == KmeansMetric::cosine) {
      for (int64_t j = 0; j < 30; ++j) {
        double norm = 0;
        for (int64_t t = 0; t < 12; ++t)
          norm += double(r.centroids[size_t(j * 12 + t)]) * r.centroids[size_t(j * 12 + t)];
        EXPECT_NEAR(norm, 1.0, 1e-5);
      }
    }
  }
}

TEST(Kmeans, SameBitsAcrossRunsThreadCountsAndBatching) {
  Context ctx;
  const int64_t b = 5, n = 700, d = 9, k = 12;
  const DenseMatrix<float> x = uniform_dense<float>(b * n, d, 7);
  const BatchedDenseView<const float> batch = contiguous_batch<const float>(x.data(), b, n, d);
  const DenseMatrix<float> c0 = uniform_dense<float>(b * k, d, 8);
  KmeansOptions o;
  o.seed = 3;
  o.threads = 1;
  const ops::KmeansResult one = ops::kmeans<float>(ctx, batch, k, o);
  for (int threads : {2, 3, 8}) {  // 2, 3: across problems; 8: inside each problem
    o.threads = threads;
    const ops::KmeansResult r = ops::kmeans<float>(ctx, batch, k, o);
    EXPECT_EQ(r.centroids.to_vector(), one.centroids.to_vector()) << threads;
    EXPECT_EQ(r.labels.to_vector(), one.labels.to_vector()) << threads;
    EXPECT_EQ(r.inertia, one.inertia) << threads;
  }
  // A batch with given centroids equals its problems run one at a time.
  o.init = KmeansInit::given;
  o.initial_centroids = contiguous_batch<const float>(c0.data(), b, k, d);
  const ops::KmeansResult all = ops::kmeans<float>(ctx, batch, k, o);
  for (int64_t p = 0; p < b; ++p) {
    KmeansOptions single = o;
    single.initial_centroids = contiguous_batch<const float>(c0.data() + p * k * d, 1, k, d);
    const ops::KmeansResult r = ops::kmeans<float>(
        ctx, contiguous_batch<const float>(x.data() + p * n * d, 1, n, d), k, single);
    const std::vector<float> got(all.centroids.data() + p * k * d,
                                 all.centroids.data() + (p + 1) * k * d);
    EXPECT_EQ(got, r.centroids.to_vector()) << p;
    EXPECT_EQ(all.inertia[size_t(p)], r.inertia[0]) << p;
  }
}

TEST(Kmeans, EmptyClustersKeepTheirCentroidOrMoveToTheFarthestPoint) {
  Context ctx;
  std::vector<int32_t> truth;
  const DenseMatrix<float> x = blobs(600, 4, 3, 9, &truth);
  // Three centroids on points of the data, and one far from everything: never nearest.
  DenseMatrix<float> c0(4, 4);
  for (int64_t t = 0; t < 4; ++t) {
    c0(0, t) = x(0, t), c0(1, t) = x(1, t), c0(2, t) = x(2, t), c0(3, t) = 1e4f;
  }
  KmeansOptions o;
  o.init = KmeansInit::given;
  o.initial_centroids = batch_of_one(c0.view());
  o.max_iterations = 10;
  o.empty_clusters = EmptyClusters::keep_centroid;
  const ops::KmeansResult kept = ops::kmeans<float>(ctx, batch_of_one(x.view()), 4, o);
  EXPECT_EQ(kept.counts[3], 0);
  for (int64_t t = 0; t < 4; ++t) EXPECT_EQ(kept.centroids[size_t(12 + t)], 1e4f);
  o.empty_clusters = EmptyClusters::reseed_farthest;
  const ops::KmeansResult moved = ops::kmeans<float>(ctx, batch_of_one(x.view()), 4, o);
  EXPECT_GT(moved.counts[3], 0);
  EXPECT_LT(moved.inertia[0], kept.inertia[0]);
}

TEST(Kmeans, LowPrecisionInputsEqualTheirF32Values) {
  Context ctx;
  const DenseMatrix<float> x = uniform_dense<float>(900, 33, 10);
  DenseMatrix<bf16> xb(900, 33);
  DenseMatrix<f16> xh(900, 33);
  DenseMatrix<float> xb32(900, 33), xh32(900, 33);
  for (int64_t i = 0; i < 900 * 33; ++i) {
    xb.data()[i] = from_float<bf16>(x.data()[i]), xb32.data()[i] = to_float(xb.data()[i]);
    xh.data()[i] = from_float<f16>(x.data()[i]), xh32.data()[i] = to_float(xh.data()[i]);
  }
  KmeansOptions o;
  o.seed = 5;
  const ops::KmeansResult b16 = ops::kmeans<bf16>(ctx, batch_of_one(xb.view()), 20, o);
  const ops::KmeansResult b32 = ops::kmeans<float>(ctx, batch_of_one(xb32.view()), 20, o);
  EXPECT_EQ(b16.centroids.to_vector(), b32.centroids.to_vector());
  EXPECT_EQ(b16.labels.to_vector(), b32.labels.to_vector());
  const ops::KmeansResult h16 = ops::kmeans<f16>(ctx, batch_of_one(xh.view()), 20, o);
  const ops::KmeansResult h32 = ops::kmeans<float>(ctx, batch_of_one(xh32.view()), 20, o);
  EXPECT_EQ(h16.centroids.to_vector(), h32.centroids.to_vector());
}

TEST(Kmeans, KMeansObjectWarmStartsAndPredicts) {
  Context ctx;
  const DenseMatrix<float> x = uniform_dense<float>(800, 6, 12);
  ops::KmeansOptions o;
  o.max_iterations = 2;
  o.tolerance = 0;
  ops::KMeans km(10, o);
  EXPECT_THAT(error_of([&] { km.predict<float>(ctx, batch_of_one(x.view())); }),
              HasSubstr("fit first"));
  const double first = km.fit<float>(ctx, batch_of_one(x.view())).inertia[0];
  const ops::KmeansResult& second = km.fit<float>(ctx, batch_of_one(x.view()));
  EXPECT_DOUBLE_EQ(second.inertia_history[0][0], first)
      << "the second fit starts where the first ended";
  EXPECT_LE(second.inertia[0], first);
  EXPECT_EQ(km.predict<float>(ctx, batch_of_one(x.view())), second.labels.to_vector());
}

TEST(Kmeans, StopsWhenConvergedUnlessTheIterationsAreFixed) {
  Context ctx;
  std::vector<int32_t> truth;
  const DenseMatrix<float> x = blobs(500, 3, 4, 19, &truth);
  KmeansOptions o;
  o.max_iterations = 30;
  const ops::KmeansResult early = ops::kmeans<float>(ctx, batch_of_one(x.view()), 4, o);
  EXPECT_LT(early.iterations, 30);
  o.fixed_iterations = true;
  const ops::KmeansResult fixed = ops::kmeans<float>(ctx, batch_of_one(x.view()), 4, o);
  EXPECT_EQ(fixed.iterations, 30);
  EXPECT_EQ(fixed.inertia_history[0].size(), 31u);
  EXPECT_EQ(fixed.labels.to_vector(), early.labels.to_vector());
}

TEST(Kmeans, EdgeShapes) {
  Context ctx;
  // k = n: every point its own cluster, inertia 0.
  const DenseMatrix<float> x = uniform_dense<float>(17, 1, 13);
  const ops::KmeansResult r = ops::kmeans<float>(ctx, batch_of_one(x.view()), 17);
  EXPECT_NEAR(r.inertia[0], 0.0, 1e-5);
  // An empty batch.
  const ops::KmeansResult none =
      ops::kmeans<float>(ctx, contiguous_batch<const float>(x.data(), 0, 17, 1), 3);
  EXPECT_EQ(none.labels.size(), 0u);
  EXPECT_EQ(none.iterations, 0);
  // Identical points: k-means++ still picks k distinct indices.
  const DenseMatrix<float> same(50, 3, 1.5f);
  const ops::KmeansResult s = ops::kmeans<float>(ctx, batch_of_one(same.view()), 4);
  EXPECT_NEAR(s.inertia[0], 0.0, 1e-5);
  for (int32_t l : s.labels.to_vector()) EXPECT_EQ(l, 0) << "equal centroids: the lowest index";
}

TEST(Kmeans, WithoutTheFinalAssignmentTheLabelsAreThoseOfTheLastUpdate) {
  Context ctx;
  const DenseMatrix<float> x = uniform_dense<float>(2 * 700, 9, 61);
  const auto batch = contiguous_batch<const float>(x.data(), 2, 700, 9);
  KmeansOptions o;
  o.init = KmeansInit::random;
  o.seed = 3;
  o.fixed_iterations = true;
  for (int iters : {1, 4}) {
    o.max_iterations = iters - 1;
    const ops::KmeansResult before = ops::kmeans(ctx, batch, 12, o);
    o.max_iterations = iters;
    const ops::KmeansResult full = ops::kmeans(ctx, batch, 12, o);
    o.final_assignment = false;
    const ops::KmeansResult last = ops::kmeans(ctx, batch, 12, o);
    o.final_assignment = true;
    EXPECT_EQ(last.iterations, iters);
    EXPECT_EQ(last.labels.to_vector(), before.labels.to_vector());
    EXPECT_EQ(last.counts.to_vector(), before.counts.to_vector());
    EXPECT_EQ(last.centroids.to_vector(), full.centroids.to_vector());
    EXPECT_EQ(last.inertia_history, before.inertia_history);
  }
}

TEST(Kmeans, BadInputGetsClearErrors) {
  Context ctx;
  DenseMatrix<float> x = uniform_dense<float>(20, 4, 14);
  const auto run = [&](int64_t k, KmeansOptions o = {}) {
    return error_of([&] { ops::kmeans<float>(ctx, batch_of_one(x.view()), k, o); });
  };
  EXPECT_THAT(run(0), HasSubstr("k = 0 must be positive"));
  EXPECT_THAT(run(21), HasSubstr("k = 21 exceeds the 20 points"));
  KmeansOptions given;
  given.init = KmeansInit::given;
  const DenseMatrix<float> wrong = uniform_dense<float>(3, 5, 15);
  given.initial_centroids = batch_of_one(wrong.view());
  EXPECT_THAT(run(3, given), HasSubstr("centroids are [1, 3, 5] but the problem needs [1, 3, 4]"));
  DenseMatrix<float> nan_c = uniform_dense<float>(3, 4, 16);
  nan_c(1, 2) = NAN;
  given.initial_centroids = batch_of_one(nan_c.view());
  EXPECT_THAT(run(3, given), HasSubstr("centroid [0][1][2] is nan"));
  KmeansOptions negative;
  negative.max_iterations = -1;
  EXPECT_THAT(run(3, negative), HasSubstr("max_iterations = -1"));
  DenseMatrix<float> zero_d(5, 0);
  EXPECT_THAT(error_of([&] { ops::kmeans<float>(ctx, batch_of_one(zero_d.view()), 2); }),
              HasSubstr("dimension 0"));
  // NaN / Inf in X, named by problem, row and column; nothing is written.
  DenseMatrix<float> xs = uniform_dense<float>(40, 4, 17);
  xs(33, 2) = INFINITY;  // problem 1, row 13 of a [2, 20, 4] batch
  EXPECT_THAT(error_of([&] {
                ops::kmeans<float>(ctx, contiguous_batch<const float>(xs.data(), 2, 20, 4), 2);
              }),
              HasSubstr("X[1][13][2] is inf"));
  KmeansOptions cosine;
  cosine.metric = KmeansMetric::cosine;
  for (int64_t t = 0; t < 4; ++t) x(7, t) = 0;
  EXPECT_THAT(run(2, cosine), HasSubstr("X[0][7] is the zero vector"));
  if (!device::available()) {  // device inputs without a device (or without CUDA): a clear no
    DenseView<const float> on_device = x.view();
    on_device.space = MemorySpace::device;
    EXPECT_THAT(error_of([&] { ops::kmeans<float>(ctx, batch_of_one(on_device), 2); }),
                HasSubstr("CUDA"));
  }
  EXPECT_THAT(error_of([] { ops::parse_kmeans_metric("manhattan"); }),
              HasSubstr("unknown k-means metric 'manhattan'"));
  std::vector<int32_t> labels(20);
  EXPECT_THAT(error_of([&] {
                ops::kmeans_assign<float>(ctx, batch_of_one(x.view()), batch_of_one(wrong.view()),
                                          KmeansMetric::l2, labels.data());
              }),
              HasSubstr("centroids are [1, 3, 5]"));
  // Points of dimension 0, on either side: refused before any kernel runs.
  DenseView<const float> no_dims = x.view();
  no_dims.cols = 0;
  DenseView<const float> no_dim_centroids = wrong.view();
  no_dim_centroids.cols = 0;
  for (MemorySpace space : {MemorySpace::host, MemorySpace::device}) {
    no_dims.space = space;
    EXPECT_THAT(error_of([&] {
                  ops::kmeans_assign<float>(ctx, batch_of_one(no_dims),
                                            batch_of_one(no_dim_centroids), KmeansMetric::l2,
                                            labels.data());
                }),
                HasSubstr("kmeans_assign: points have dimension 0"));
  }
}

TEST(Kmeans, SiftVectors) {
  const std::string path =
      tessera::testing::shared_data_dir() + "/ann/ngt_sift5k/sift5k_base.fvecs";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " is absent";
  const DenseMatrix<float> x = read_vecs<float>(path);
  ASSERT_EQ(x.rows(), 5000);
  ASSERT_EQ(x.cols(), 128);
  Context ctx;
  KmeansOptions o;
  o.max_iterations = 15;
  o.seed = 1;
  const ops::KmeansResult r = ops::kmeans<float>(ctx, batch_of_one(x.view()), 64, o);
  expect_labels_match(x.view(), r.centroids.data(), 64, KmeansMetric::l2, r.labels.data());
  const std::vector<double>& h = r.inertia_history[0];
  for (size_t t = 1; t < h.size(); ++t) EXPECT_LE(h[t], h[t - 1] * (1 + 1e-6)) << t;
  EXPECT_LT(h.back(), 0.8 * h.front()) << "iterations improve on the k-means++ seeds";
}

TEST(Kmeans, VecsFilesRejectTruncationAndMixedDimensions) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "tessera_vecs_test";
  std::filesystem::create_directories(dir);
  const auto write = [&](const std::string& name, const std::vector<int32_t>& words,
                         size_t drop_bytes = 0) {
    const std::string p = (dir / name).string();
    std::ofstream f(p, std::ios::binary);
    f.write(reinterpret_cast<const char*>(words.data()),
            std::streamsize(words.size() * 4 - drop_bytes));
    return p;
  };
  const std::string good = write("good.ivecs", {2, 5, 6, 2, 7, 8});
  const DenseMatrix<int32_t> m = read_vecs<int32_t>(good);
  EXPECT_EQ(m.rows(), 2);
  EXPECT_EQ(m(1, 1), 8);
  EXPECT_THAT(error_of([&] {
                read_vecs<int32_t>(write("cut.ivecs", {2, 5, 6, 2, 7, 8}, 3));
              }),
              HasSubstr("record 1 (byte 12) is truncated"));
  EXPECT_THAT(error_of([&] {
                read_vecs<int32_t>(write("mixed.ivecs", {2, 5, 6, 1, 7, 9}));
              }),
              HasSubstr("has dimension 1 but record 0 has 2"));
  // A differing dimension that also leaves the size off the record grid is named as such, not
  // reported as a truncation.
  EXPECT_THAT(error_of([&] {
                read_vecs<int32_t>(write("mixed_odd.ivecs", {2, 5, 6, 3, 7, 8, 9, 2, 1, 1}));
              }),
              HasSubstr("record 1 (byte 12) has dimension 3 but record 0 has 2"));
  EXPECT_THAT(error_of([&] {
                read_vecs<int32_t>(write("zero.ivecs", {0, 1}));
              }),
              HasSubstr("dimension 0 is not positive"));
  EXPECT_THAT(error_of([&] { read_vecs<float>((dir / "missing.fvecs").string()); }),
              HasSubstr("cannot open"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tessera
