#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "core/config.h"
#include "formats/convert.h"
#include "formats/io.h"
#include "ops/sddmm/sddmm.h"
#include "ops/spmm/spmm.h"
#include "tests/reference/reference.h"
#include "tests/test_util.h"

using namespace tessera;
using tessera::testing::awkward_shapes;
using tessera::testing::random_csr;
using tessera::testing::random_dense;
using ::testing::HasSubstr;
using tessera::testing::error_of;

namespace {

constexpr Format kAllFormats[] = {Format::coo, Format::csr, Format::csc, Format::bsr,
                                  Format::ell, Format::ragged, Format::hybrid};
const ConvertParams kParams{3, 5, -1, HybParams{3, 2}};

// Tolerance for f32 accumulation of inputs of type V against the float64 reference.
template <class V>
double tolerance() {
  return std::is_same_v<V, float> ? 1e-5 : 1e-5;  // inputs are rounded first in the reference too
}

// SDDMM output of any format, flattened in CSR entry order (padding dropped) for comparison.
template <class I>
std::vector<float> entries_in_csr_order(const AnySparse<float, I>& out) {
  return to_csr(out).values.to_vector();
}

template <class V, class I>
void check_spmm(const Csr<V, I>& csr, int64_t F, uint64_t seed, const std::string& what) {
  Context ctx;
  const DenseMatrix<V> b = random_dense<V>(csr.cols, F, seed);
  const DenseMatrix<float> c0 = random_dense<float>(csr.rows, F, seed + 1);
  for (Format f : kAllFormats) {
    const AnySparse<V, I> a = from_csr(csr, f, kParams);
    for (auto [alpha, beta] : {std::pair{1.0f, 0.0f}, std::pair{-0.5f, 2.0f}}) {
      DenseMatrix<float> c = c0.to(MemorySpace::host);
      if (beta == 0.0f) {  // beta == 0 must not read C: poison it
        for (int64_t i = 0; i < c.rows() * c.cols(); ++i) c.data()[i] = std::nanf("");
      }
      ops::SpmmOptions options;
      options.alpha = alpha;
      options.beta = beta;
      ops::spmm(ctx, a, b.view(), c.view(), options);
      const auto want = reference::spmm(csr, b, alpha, beta, &c0);
      const double err = reference::relative_error(c.data(), want);
      EXPECT_LT(err, 1e-5) << what << " format " << format_name(f) << " F=" << F
                           << " alpha=" << alpha << " beta=" << beta;
    }
  }
}

template <class V, class I>
void check_sddmm(const Csr<V, I>& csr, int64_t F, uint64_t seed, const std::string& what) {
  Context ctx;
  const DenseMatrix<V> x = random_dense<V>(csr.rows, F, seed);
  const DenseMatrix<V> y = random_dense<V>(csr.cols, F, seed + 7);
  // Reference in CSR order; formats that reorder entries are compared after to_csr, which
  // restores row-major order; with unsorted input we compare canonical forms.
  const Csr<V, I> sorted = canonicalize(csr);
  for (bool scale : {false, true}) {
    const auto want = reference::sddmm(sorted, x, y, scale);
    for (Format f : kAllFormats) {
      const AnySparse<V, I> a = from_csr(sorted, f, kParams);
      ops::SddmmOptions options;
      options.scale_by_a = scale;
      const AnySparse<float, I> out = ops::sddmm(ctx, a, x.view(), y.view(), options);
      if (f == Format::bsr) {
        // BSR computes every in-range slot of a stored block: compare only the entries of A.
        const Csr<float, I> got = to_csr(out);
        const auto dense = reference::dense(got);
        std::vector<float> picked;
        for (int64_t r = 0; r < sorted.rows; ++r) {
          for (I k = sorted.indptr[r]; k < sorted.indptr[r + 1]; ++k) {
            picked.push_back(float(dense[size_t(r * sorted.cols + sorted.indices[k])]));
          }
        }
        EXPECT_LT(reference::relative_error(picked.data(), want), 1e-5) << what << " bsr";
        continue;
      }
      const std::vector<float> got = entries_in_csr_order(out);
      ASSERT_EQ(got.size(), want.size()) << what << " " << format_name(f);
      EXPECT_LT(reference::relative_error(got.data(), want), 1e-5)
          << what << " format " << format_name(f) << " F=" << F << " scale=" << scale;
    }
  }
}

}  // namespace

template <class T>
class CpuOps : public ::testing::Test {};
using ComputeTypes = ::testing::Types<std::pair<float, int32_t>, std::pair<float, int64_t>,
                                      std::pair<bf16, int32_t>, std::pair<f16, int64_t>>;
TYPED_TEST_SUITE(CpuOps, ComputeTypes);

TYPED_TEST(CpuOps, SpmmEveryFormatAwkwardShapes) {
  using V = typename TypeParam::first_type;
  using I = typename TypeParam::second_type;
  uint64_t seed = 1000;
  for (const auto& [name, shape] : awkward_shapes()) {
    const Csr<V, I> csr = random_csr<V, I>(shape, ++seed);
    for (int64_t F : {1, 3, 33, 130}) check_spmm(csr, F, ++seed, name);
  }
}

TYPED_TEST(CpuOps, SddmmEveryFormatAwkwardShapes) {
  using V = typename TypeParam::first_type;
  using I = typename TypeParam::second_type;
  uint64_t seed = 2000;
  for (const auto& [name, shape] : awkward_shapes()) {
    const Csr<V, I> csr = random_csr<V, I>(shape, ++seed);
    for (int64_t F : {1, 7, 64}) check_sddmm(csr, F, ++seed, name);
  }
}

TYPED_TEST(CpuOps, SpmmMaxMinMeanWithArgOutputs) {
  using V = typename TypeParam::first_type;
  using I = typename TypeParam::second_type;
  Context ctx;
  uint64_t seed = 3000;
  const std::pair<ops::SpmmReduce, const char*> reductions[] = {
      {ops::SpmmReduce::max, "max"}, {ops::SpmmReduce::min, "min"}, {ops::SpmmReduce::mean, "mean"}};
  for (const auto& [name, shape] : awkward_shapes()) {
    const Csr<V, I> csr = random_csr<V, I>(shape, ++seed);
    for (int64_t F : {0, 1, 3, 33}) {
      const DenseMatrix<V> b = random_dense<V>(csr.cols, F, ++seed);
      const DenseMatrix<float> c0 = random_dense<float>(csr.rows, F, ++seed);
      for (const auto& [op, op_name] : reductions) {
        std::vector<int64_t> want_arg;
        const bool extreme = op != ops::SpmmReduce::mean;
        const std::vector<double> want = reference::spmm_reduce(csr, b, op_name, &want_arg);
        for (int threads : {1, 3}) {
          ctx.set_cpu_threads(threads);
          DenseMatrix<float> c = c0.to(MemorySpace::host);
          std::vector<int64_t> arg(size_t(csr.rows * F), 42);
          ops::SpmmOptions o;
          o.reduce = op;
          o.alpha = -0.5f;
          o.beta = 2.0f;
          o.arg = extreme ? arg.data() : nullptr;
          ops::spmm(ctx, csr.view(), b.view(), c.view(), o);
          const std::string where = name + " " + op_name + " F=" + std::to_string(F) +
                                    " threads=" + std::to_string(threads);
          for (int64_t i = 0; i < csr.rows * F; ++i) {
            const double expect = -0.5 * want[size_t(i)] + 2.0 * double(c0.data()[i]);
            ASSERT_NEAR(c.data()[i], expect, 1e-5 * (1 + std::fabs(expect))) << where << " at " << i;
            if (extreme) {
              ASSERT_EQ(arg[size_t(i)], want_arg[size_t(i)]) << where << " at " << i;
            }
          }
        }
      }
    }
  }
}

TEST(CpuOps, SpmmReductionTiesNanAndErrors) {
  Context ctx;
  // Row 0: columns 2 and 0 give the same products (B's rows 0 and 2 equal, A's values equal): the
  // first in the row's order wins, whatever its column. Row 1 is empty. Row 2 meets a NaN.
  Csr<float, int32_t> a{3, 4, Buffer<int32_t>(std::vector<int32_t>{0, 3, 3, 5}),
                        Buffer<int32_t>(std::vector<int32_t>{2, 0, 1, 3, 1}),
                        Buffer<float>(std::vector<float>{1.5f, 1.5f, 1.0f, 2.0f, 1.0f})};
  DenseMatrix<float> b(4, 2, 1.0f);
  b.data()[1 * 2 + 0] = -7.0f;  // B[1][0]
  b.data()[3 * 2 + 1] = NAN;    // B[3][1]
  DenseMatrix<float> c(3, 2, 0.0f);
  std::vector<int64_t> arg(6, 42);
  ops::SpmmOptions o;
  o.reduce = ops::SpmmReduce::max;
  o.arg = arg.data();
  ops::spmm(ctx, a.view(), b.view(), c.view(), o);
  EXPECT_EQ(c.data()[0], 1.5f);
  EXPECT_EQ(arg[0], 2) << "the tie goes to the first entry of the row (column 2)";
  EXPECT_EQ(c.data()[2], 0.0f);
  EXPECT_EQ(arg[2], -1) << "an empty row";
  EXPECT_EQ(c.data()[4], 2.0f);  // row 2, f = 0: max(2 * 1, 1 * -7)
  EXPECT_EQ(arg[4], 3);
  EXPECT_TRUE(std::isnan(c.data()[5]));  // row 2, f = 1: 2 * NaN wins
  EXPECT_EQ(arg[5], 3);
  o.reduce = ops::SpmmReduce::min;
  ops::spmm(ctx, a.view(), b.view(), c.view(), o);
  EXPECT_EQ(c.data()[4], -7.0f);
  EXPECT_EQ(arg[4], 1);
  // A NaN after a finite best replaces it; a finite product after a NaN does not.
  Csr<float, int32_t> late{1, 4, Buffer<int32_t>(std::vector<int32_t>{0, 3}),
                           Buffer<int32_t>(std::vector<int32_t>{0, 3, 2}),
                           Buffer<float>(std::vector<float>{1.0f, 1.0f, 5.0f})};
  DenseMatrix<float> c1(1, 2, 0.0f);
  std::vector<int64_t> arg1(2, 42);
  o.arg = arg1.data();
  for (ops::SpmmReduce op : {ops::SpmmReduce::max, ops::SpmmReduce::min}) {
    o.reduce = op;
    ops::spmm(ctx, late.view(), b.view(), c1.view(), o);
    EXPECT_TRUE(std::isnan(c1.data()[1])) << ops::spmm_reduce_name(op);  // 1, then NaN, then 5
    EXPECT_EQ(arg1[1], 3) << ops::spmm_reduce_name(op);
  }
  o.arg = arg.data();
  // Errors: arg with sum or mean; other formats are refused.
  o.reduce = ops::SpmmReduce::mean;
  EXPECT_THAT(error_of([&] { ops::spmm(ctx, a.view(), b.view(), c.view(), o); }),
              HasSubstr("an arg output goes with reduce=max or min, not mean"));
  o.arg = nullptr;
  const AnySparse<float, int32_t> coo = csr_to_coo(a);
  EXPECT_THAT(error_of([&] { ops::spmm(ctx, coo, b.view(), c.view(), o); }),
              HasSubstr("reduce=mean takes CSR in this version, not coo"));
}

TEST(CpuOps, SpmmStridedViewsAndThreadCounts) {
  const Csr<float, int32_t> csr = random_csr<float, int32_t>({200, 90, 0.05, 0.1, 3}, 5);
  const DenseMatrix<float> b = random_dense<float>(90, 40, 6);
  const auto want = reference::spmm(csr, b);
  // C as a 17-column window of a wider buffer (ld = 50), B likewise (ld = 40 > 17).
  DenseMatrix<float> wide(200, 50, -7.0f);
  DenseView<float> c{200, 17, 50, wide.data(), MemorySpace::host};
  DenseView<const float> bv{90, 17, 40, b.data(), MemorySpace::host};
  for (int threads : {1, 2, 3}) {
    Context ctx;
    ctx.set_cpu_threads(threads);
    ops::spmm(ctx, csr.view(), bv, c);
    for (int64_t r = 0; r < 200; ++r) {
      double ref_row_err = 0;
      for (int64_t f = 0; f < 17; ++f) {
        double expect = 0;
        for (int32_t e = csr.indptr[r]; e < csr.indptr[r + 1]; ++e) {
          expect += double(csr.values[e]) * double(b(csr.indices[e], f));
        }
        ref_row_err = std::max(ref_row_err, std::abs(expect - c(r, f)));
      }
      ASSERT_LT(ref_row_err, 1e-4) << "row " << r;
      EXPECT_EQ(wide(r, 17), -7.0f) << "wrote outside the view";
    }
  }
  (void)want;
}

TEST(CpuOps, RealMatricesAgainstReference) {
  const std::filesystem::path dir = std::filesystem::path(tessera::testing::shared_data_dir()) / "mtx";
  if (!std::filesystem::exists(dir / "ca-GrQc.mtx")) GTEST_SKIP() << "shared data not present";
  for (const char* name : {"ca-GrQc", "bcsstk13"}) {
    const Csr<float, int32_t> csr =
        coo_to_csr(read_matrix_market<float, int32_t>((dir / (std::string(name) + ".mtx")).string()));
    check_spmm(csr, 32, 77, name);
    check_sddmm(csr, 16, 78, name);
  }
}

TEST(CpuOps, BadInputGetsClearErrors) {
  Context ctx;
  const Csr<float, int32_t> csr = random_csr<float, int32_t>({10, 8, 0.3}, 1);
  DenseMatrix<float> b(8, 4), c(10, 4), wrong_b(9, 4), wrong_c(10, 5);
  EXPECT_THAT(error_of([&] { ops::spmm(ctx, csr.view(), wrong_b.view(), c.view()); }),
              HasSubstr("B has 9 rows but A has 8 columns"));
  EXPECT_THAT(error_of([&] { ops::spmm(ctx, csr.view(), b.view(), wrong_c.view()); }),
              HasSubstr("B has 4 columns but C has 5"));
  DenseView<float> device_c = c.view();
  device_c.space = MemorySpace::device;
  EXPECT_THAT(error_of([&] { ops::spmm(ctx, csr.view(), b.view(), device_c); }),
              HasSubstr("C is in device memory"));
  Csr<float, int32_t> broken = csr;
  broken.indices[0] = 99;
  EXPECT_THAT(error_of([&] { ops::spmm(ctx, broken.view(), b.view(), c.view()); }),
              HasSubstr("outside [0, 8)"));
  DenseMatrix<float> x(10, 3), y(8, 4);
  EXPECT_THAT(error_of([&] { ops::sddmm(ctx, AnySparse<float, int32_t>(csr), x.view(), y.view()); }),
              HasSubstr("X has 3 columns but Y has 4"));
  if (!kCudaEnabled) {
    CsrView<float, int32_t> dv = csr.view();
    dv.space = MemorySpace::device;
    DenseView<const float> db = b.view();
    db.space = MemorySpace::device;
    DenseView<float> dc = c.view();
    dc.space = MemorySpace::device;
    EXPECT_THAT(error_of([&] { ops::spmm(ctx, dv, db, dc); }), HasSubstr("no CUDA support"));
  }
}

TEST(CpuOps, SpmmLargeOutputWithCacheBypassingStores) {
  // C of 70000 x 130 f32 (36 MB) is past the streaming threshold; F = 130 makes some row starts
  // 32-byte aligned and some not, so both store paths run.
  const Csr<float, int32_t> csr = random_csr<float, int32_t>({70000, 3000, 0.002, 0.05, 11}, 21);
  const DenseMatrix<float> b = random_dense<float>(3000, 130, 22);
  DenseMatrix<float> c(70000, 130, std::nanf(""));
  Context ctx;
  ops::spmm(ctx, csr.view(), b.view(), c.view());
  EXPECT_LT(reference::relative_error(c.data(), reference::spmm(csr, b)), 1e-5);
}
