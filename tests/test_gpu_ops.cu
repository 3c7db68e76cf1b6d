// GPU tests: device buffers and the CUDA CSR SpMM/SDDMM kernels against the float64 CPU oracle.
// Every test skips when no CUDA device is visible.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "core/cuda_check.h"
#include "core/device.h"
#include "core/random.h"
#include "formats/convert.h"
#include "ops/cusparse_plan.h"
#include "ops/sddmm/sddmm.h"
#include "ops/spmm/spmm.h"
#include "schedule/schedule.h"
#include "tests/reference/reference.h"
#include "tests/test_util.h"

using namespace tessera;
using tessera::testing::awkward_shapes;
using tessera::testing::random_csr;
using tessera::testing::random_dense;

#define SKIP_WITHOUT_GPU() \
  if (!device::available()) GTEST_SKIP() << "no CUDA device"

TEST(GpuBuffer, RoundTripAndDeviceToDevice) {
  SKIP_WITHOUT_GPU();
  std::vector<float> host(100003);
  for (size_t i = 0; i < host.size(); ++i) host[i] = float(i) * 0.5f - 7.0f;
  Buffer<float> d(host, MemorySpace::device);
  EXPECT_EQ(d.space(), MemorySpace::device);
  Buffer<float> d2 = d;  // device -> device copy
  EXPECT_EQ(d2.to_vector(), host);
  EXPECT_EQ(d2.to(MemorySpace::host).to_vector(), host);
  Buffer<float> empty(0, MemorySpace::device);
  EXPECT_TRUE(empty.to_vector().empty());
  EXPECT_FALSE(device::name().empty());
}

template <class T>
class GpuOps : public ::testing::Test {};
using ComputeTypes = ::testing::Types<std::pair<float, int32_t>, std::pair<float, int64_t>,
                                      std::pair<bf16, int32_t>, std::pair<f16, int64_t>>;
TYPED_TEST_SUITE(GpuOps, ComputeTypes);

// Schedules checked for a problem: the default, and for f32 / int32 every schedule in the space
// (every knob combination of every variant, cuSPARSE included); otherwise a spread of them.
std::vector<schedule::Schedule> schedules_to_check(const schedule::Problem& p, bool sweep) {
  std::vector<schedule::Schedule> out{schedule::default_schedule(p)};
  if (sweep) {
    for (const schedule::Schedule& s : schedule::space(p)) out.push_back(s);
    return out;
  }
  const std::vector<const char*> spread =
      p.op == schedule::Op::spmm
          ? std::vector<const char*>{"csr.row_split:tpr=1,rpb=64,vec=1", "csr.row_split:tpr=4,rpb=16,vec=2",
                                     "csr.row_split:tpr=16,rpb=4,vec=4", "csr.merge_path:tpr=4,vec=2,ipt=32",
                                     "csr.merge_path:tpr=8,vec=4,ipt=64", "csr.merge_path:tpr=32,vec=1,ipt=2048"}
          : std::vector<const char*>{"csr.row_split:tpr=4,vec=1", "csr.row_split:tpr=32,vec=4",
                                     "csr.edge_group:tpe=4,vec=1,ept=4",
                                     "csr.edge_group:tpe=8,vec=4,ept=256", "csr.edge_group:tpe=32,vec=2,ept=16"};
  for (const char* text : spread) {
    const schedule::Schedule s = schedule::parse(p.op, text);
    if (schedule::can_implement(s, p)) out.push_back(s);
  }
  return out;
}

TYPED_TEST(GpuOps, SpmmCsrEveryScheduleMatchesReference) {
  SKIP_WITHOUT_GPU();
  using V = typename TypeParam::first_type;
  using I = typename TypeParam::second_type;
  constexpr bool kSweep = std::is_same_v<V, float> && std::is_same_v<I, int32_t>;
  Context ctx;
  uint64_t seed = 5000;
  for (const auto& [name, shape] : awkward_shapes()) {
    const Csr<V, I> csr = random_csr<V, I>(shape, ++seed);
    const Csr<V, I> dcsr = csr.to(MemorySpace::device);
    for (int64_t F : {1, 3, 33, 64, 257}) {
      const DenseMatrix<V> b = random_dense<V>(csr.cols, F, ++seed);
      const DenseMatrix<float> c0 = random_dense<float>(csr.rows, F, ++seed);
      DenseMatrix<float> poisoned = c0.to(MemorySpace::host);  // beta == 0 must not read C
      for (int64_t i = 0; i < poisoned.rows() * poisoned.cols(); ++i) poisoned.data()[i] = std::nanf("");
      const DenseMatrix<V> db = b.to(MemorySpace::device);
      const DenseMatrix<float> dc0 = c0.to(MemorySpace::device), dpoison = poisoned.to(MemorySpace::device);
      const schedule::Problem problem = schedule::describe(schedule::Op::spmm, dcsr.view(), F, F, F);
      const auto want_plain = reference::spmm(csr, b);
      const auto want_scaled = reference::spmm(csr, b, 0.5, -1.5, &c0);
      for (const schedule::Schedule& s : schedules_to_check(problem, kSweep)) {
        for (bool scaled : {false, true}) {
          if (scaled && s.variant == "csr.row_split" && !(s == schedule::default_schedule(problem))) continue;
          DenseMatrix<float> dc = (scaled ? dc0 : dpoison).to(MemorySpace::device);
          ops::SpmmOptions options;
          options.alpha = scaled ? 0.5f : 1.0f;
          options.beta = scaled ? -1.5f : 0.0f;
          options.schedule = s;
          ops::spmm(ctx, dcsr.view(), db.view(), dc.view(), options);
          ctx.synchronize();
          const DenseMatrix<float> got = dc.to(MemorySpace::host);
          EXPECT_LT(reference::relative_error(got.data(), scaled ? want_scaled : want_plain), 1e-5)
              << name << " F=" << F << " " << s.to_string() << (scaled ? " alpha=0.5 beta=-1.5" : "");
        }
      }
    }
  }
}

TEST(GpuOps, ScheduleThatCannotRunIsRejected) {
  SKIP_WITHOUT_GPU();
  Context ctx;
  const Csr<float, int32_t> csr = random_csr<float, int32_t>({40, 30, 0.2}, 3);
  const Csr<float, int32_t> dcsr = csr.to(MemorySpace::device);
  const DenseMatrix<float> db = random_dense<float>(30, 33, 4).to(MemorySpace::device);
  DenseMatrix<float> dc(40, 33, MemorySpace::device);
  ops::SpmmOptions options;
  options.schedule = schedule::parse(schedule::Op::spmm, "csr.row_split:vec=4");
  try {
    ops::spmm(ctx, dcsr.view(), db.view(), dc.view(), options);
    FAIL() << "vec=4 with F = 33 should be rejected";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("multiples of 4"));
  }
  const Csr<bf16, int32_t> dbf = cast_values<bf16>(csr).to(MemorySpace::device);
  const DenseMatrix<bf16> dbb = random_dense<bf16>(30, 33, 5).to(MemorySpace::device);
  options.schedule = schedule::parse(schedule::Op::spmm, "csr.cusparse");
  EXPECT_THROW(ops::spmm(ctx, dbf.view(), dbb.view(), dc.view(), options), Error);
}

TYPED_TEST(GpuOps, SddmmCsrEveryScheduleMatchesReference) {
  SKIP_WITHOUT_GPU();
  using V = typename TypeParam::first_type;
  using I = typename TypeParam::second_type;
  constexpr bool kSweep = std::is_same_v<V, float> && std::is_same_v<I, int32_t>;
  Context ctx;
  uint64_t seed = 6000;
  for (const auto& [name, shape] : awkward_shapes()) {
    const Csr<V, I> csr = random_csr<V, I>(shape, ++seed);
    const Csr<V, I> dcsr = csr.to(MemorySpace::device);
    for (int64_t F : {1, 3, 33, 64, 257}) {
      const DenseMatrix<V> x = random_dense<V>(csr.rows, F, ++seed);
      const DenseMatrix<V> y = random_dense<V>(csr.cols, F, ++seed);
      const DenseMatrix<V> dx = x.to(MemorySpace::device), dy = y.to(MemorySpace::device);
      const schedule::Problem problem = schedule::describe(schedule::Op::sddmm, dcsr.view(), F, F, F);
      for (bool scale : {false, true}) {
        const auto want = reference::sddmm(csr, x, y, scale);
        for (const schedule::Schedule& s : schedules_to_check(problem, kSweep)) {
          Buffer<float> out(std::vector<float>(size_t(csr.nnz()), std::nanf("")), MemorySpace::device);
          ops::SddmmOptions options;
          options.scale_by_a = scale;
          options.schedule = s;
          ops::sddmm(ctx, dcsr.view(), dx.view(), dy.view(), out.data(), options);
          ctx.synchronize();
          const std::vector<float> got = out.to_vector();
          EXPECT_LT(reference::relative_error(got.data(), want), 1e-5)
              << name << " F=" << F << " scale=" << scale << " " << s.to_string();
        }
      }
    }
  }
}

// A power-law extreme: one row holds most nonzeros, long runs of empty rows, a row at the very
// end. Merge-path teams of 32 items share the long row (carry chains of thousands of teams).
Csr<float, int32_t> hub_matrix() {
  const int64_t rows = 20000, cols = 60000;
  Rng rng(77);
  std::vector<int32_t> indptr{0}, indices;
  std::vector<float> values;
  for (int64_t r = 0; r < rows; ++r) {
    int64_t len = 0;
    if (r == 4321) {
      len = 150000;
    } else if (r == rows - 1) {
      len = 5;
    } else if (r % 1000 < 600) {
      len = int64_t(rng.uniform() * 9);  // rows 600..999 of every thousand stay empty
    }
    for (int64_t k = 0; k < len; ++k) {
      indices.push_back(int32_t(len == 150000 ? k * cols / len : int64_t(rng.uniform() * cols)));
      values.push_back(float(rng.uniform() * 2 - 1));
    }
    indptr.push_back(int32_t(indices.size()));
  }
  return {rows, cols, Buffer<int32_t>(indptr), Buffer<int32_t>(indices), Buffer<float>(values)};
}

TEST(GpuOps, MergePathSharesAHubRowAndSkipsEmptyRuns) {
  SKIP_WITHOUT_GPU();
  Context ctx;
  const Csr<float, int32_t> csr = hub_matrix();
  const Csr<float, int32_t> dcsr = csr.to(MemorySpace::device);
  for (int64_t F : {5, 64}) {
    const DenseMatrix<float> b = random_dense<float>(csr.cols, F, 3);
    const DenseMatrix<float> c0 = random_dense<float>(csr.rows, F, 4);
    const DenseMatrix<float> db = b.to(MemorySpace::device);
    const auto want = reference::spmm(csr, b, 0.5, 2.0, &c0);
    for (const char* text : {"csr.merge_path:tpr=4,vec=1,ipt=32", "csr.merge_path:tpr=32,vec=1,ipt=2048",
                             "csr.merge_path:tpr=8,vec=1,ipt=256"}) {
      ops::SpmmOptions options;
      options.alpha = 0.5f;
      options.beta = 2.0f;
      options.schedule = schedule::parse(schedule::Op::spmm, text);
      std::vector<float> first;
      for (int run = 0; run < 3; ++run) {  // deterministic: the same bits every run
        DenseMatrix<float> dc = c0.to(MemorySpace::device);
        ops::spmm(ctx, dcsr.view(), db.view(), dc.view(), options);
        ctx.synchronize();
        const std::vector<float> got = dc.buffer().to_vector();
        if (run == 0) {
          EXPECT_LT(reference::relative_error(got.data(), want), 1e-5) << text << " F=" << F;
          first = got;
        } else {
          ASSERT_EQ(got, first) << text << " F=" << F << " run " << run;
        }
      }
    }
    // SDDMM over the same pattern: edge groups share the hub row too.
    const DenseMatrix<float> x = random_dense<float>(csr.rows, F, 5);
    const DenseMatrix<float> dx = x.to(MemorySpace::device);
    const auto want_sddmm = reference::sddmm(csr, x, b, false);
    for (const char* text : {"csr.edge_group:tpe=4,vec=1,ept=4", "csr.edge_group:tpe=32,vec=1,ept=256",
                             "csr.row_split:tpr=8,vec=1"}) {
      ops::SddmmOptions options;
      options.schedule = schedule::parse(schedule::Op::sddmm, text);
      Buffer<float> out(size_t(csr.nnz()), MemorySpace::device);
      ops::sddmm(ctx, dcsr.view(), dx.view(), db.view(), out.data(), options);
      ctx.synchronize();
      EXPECT_LT(reference::relative_error(out.to_vector().data(), want_sddmm), 1e-5) << text << " F=" << F;
    }
  }
}

TEST(GpuOps, CusparsePlansMatchTheReferenceOnEveryRun) {
  SKIP_WITHOUT_GPU();
  Context ctx;
  const Csr<float, int32_t> csr = random_csr<float, int32_t>({700, 500, 0.02, 0.2, 3}, 21);
  const Csr<float, int32_t> dcsr = csr.to(MemorySpace::device);
  const DenseMatrix<float> b = random_dense<float>(500, 36, 22), x = random_dense<float>(700, 36, 23);
  const DenseMatrix<float> db = b.to(MemorySpace::device), dx = x.to(MemorySpace::device);
  const auto want = reference::spmm(csr, b);
  for (int alg : {1, 2, 3}) {
    DenseMatrix<float> dc(700, 36, MemorySpace::device);
    ops::CusparsePlan plan = ops::CusparsePlan::spmm(ctx, dcsr.view(), db.view(), dc.view(), 1.0f, 0.0f, alg);
    for (int run = 0; run < 2; ++run) {
      TSR_CUDA_CHECK(cudaMemsetAsync(dc.data(), 0xff, size_t(700 * 36) * sizeof(float),
                                     static_cast<cudaStream_t>(ctx.stream())));
      plan.run();
      ctx.synchronize();
      EXPECT_LT(reference::relative_error(dc.buffer().to_vector().data(), want), 1e-5) << "alg " << alg;
    }
  }
  Buffer<float> out(size_t(csr.nnz()), MemorySpace::device);
  ops::CusparsePlan plan = ops::CusparsePlan::sddmm(ctx, dcsr.view(), dx.view(), db.view(), out.data());
  plan.run();
  ctx.synchronize();
  EXPECT_LT(reference::relative_error(out.to_vector().data(), reference::sddmm(csr, x, b, false)), 1e-5);
}

TEST(GpuOps, DeterministicBitsAcrossRuns) {
  SKIP_WITHOUT_GPU();
  Context ctx;
  const Csr<float, int32_t> csr = random_csr<float, int32_t>({3000, 2000, 0.01, 0.1, 7}, 9);
  const Csr<float, int32_t> dcsr = csr.to(MemorySpace::device);
  const DenseMatrix<float> db = random_dense<float>(2000, 70, 10).to(MemorySpace::device);
  DenseMatrix<float> dc(3000, 70, MemorySpace::device);
  ops::spmm(ctx, dcsr.view(), db.view(), dc.view());
  ctx.synchronize();
  const std::vector<float> first = dc.buffer().to_vector();
  for (int run = 0; run < 3; ++run) {
    ops::spmm(ctx, dcsr.view(), db.view(), dc.view());
    ctx.synchronize();
    ASSERT_EQ(dc.buffer().to_vector(), first) << "run " << run;
  }
}

TEST(GpuOps, MixedSpacesAndOtherFormatsAreRejected) {
  SKIP_WITHOUT_GPU();
  Context ctx;
  const Csr<float, int32_t> csr = random_csr<float, int32_t>({10, 8, 0.3}, 1);
  const Csr<float, int32_t> dcsr = csr.to(MemorySpace::device);
  DenseMatrix<float> hb(8, 4, 1.0f), dc(10, 4, MemorySpace::device);
  EXPECT_THROW(ops::spmm(ctx, dcsr.view(), hb.view(), dc.view()), Error);
  const DenseMatrix<float> db = hb.to(MemorySpace::device);
  AnySparse<float, int32_t> dell = csr_to_ell(csr).to(MemorySpace::device);
  EXPECT_THROW(ops::spmm(ctx, dell, db.view(), dc.view()), Error);
  // Malformed device arrays are caught on the device, naming the first bad position.
  Csr<float, int32_t> broken = csr;
  broken.indices[broken.nnz() - 1] = 8;
  const Csr<float, int32_t> dbroken = broken.to(MemorySpace::device);
  try {
    ops::spmm(ctx, dbroken.view(), db.view(), dc.view());
    FAIL() << "out-of-range column on the device was not caught";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("Csr.indices[" + std::to_string(broken.nnz() - 1) +
                                               "] = 8 is outside [0, 8)"));
  }
  broken = csr;
  broken.indptr[3] = broken.indptr[4] + 1;
  const Csr<float, int32_t> dbroken2 = broken.to(MemorySpace::device);
  Buffer<float> out(size_t(csr.nnz()), MemorySpace::device);
  const DenseMatrix<float> dx = DenseMatrix<float>(10, 4, 1.0f).to(MemorySpace::device);
  EXPECT_THROW(ops::sddmm(ctx, dbroken2.view(), dx.view(), db.view(), out.data()), Error);
}
