// GPU tests: device buffers and the CUDA CSR SpMM/SDDMM kernels against the float64 CPU oracle.
// Every test skips when no CUDA device is visible.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <string>

#include "core/cuda_check.h"
#include "core/device.h"
#include "core/random.h"
#include "formats/convert.h"
#include "ops/cuda_kernels.h"
#include "ops/cusparse_plan.h"
#include "ops/sddmm/sddmm.h"
#include "ops/spmm/spmm.h"
#include "schedule/schedule.h"
#include "tests/reference/reference.h"
#include "tests/test_util.h"

using namespace tessera;
using tessera::testing::awkward_shapes;
using tessera::testing::error_of;
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
                                     "csr.merge_path:tpr=8,vec=4,ipt=64", "csr.merge_path:tpr=32,vec=1,ipt=2048",
                                     // 16-bit values only (F = 64 here): two nonzeros a lane per chunk
                                     "csr.merge_path:tpr=4,vec=8,ipt=32", "csr.merge_path:tpr=16,vec=8,ipt=512",
                                     // 16-bit values, F a multiple of 32 (F = 64 here)
                                     "csr.nnz_split:g=4,ept=128", "csr.nnz_split:g=8,ept=256",
                                     "csr.nnz_split:g=8,ept=4096", "csr.nnz_split:g=8,ept=0",
                                     "csr.nnz_split:g=4,ept=128,queue=0", "csr.nnz_split:g=8,ept=256,queue=0"}
          : std::vector<const char*>{"csr.row_split:tpr=4,vec=1", "csr.row_split:tpr=32,vec=4",
                                     "csr.edge_group:tpe=4,vec=1,ept=4",
                                     "csr.edge_group:tpe=8,vec=4,ept=256", "csr.edge_group:tpe=32,vec=2,ept=16",
                                     // batches of 8 over one or several passes, teams of 4 to 32
                                     "csr.edge_batch:tpe=4,vec=1,ept=64", "csr.edge_batch:tpe=8,vec=4,ept=256",
                                     "csr.edge_batch:tpe=16,vec=2,ept=128", "csr.edge_batch:tpe=32,vec=4,ept=64",
                                     // a warp per row: 8 teams (64-edge batches) down to 1 (8 edges)
                                     "csr.row_batch:tpe=4,vec=4", "csr.row_batch:tpe=8,vec=2",
                                     "csr.row_batch:tpe=32,vec=1"};
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

// csr.nnz_split's carries: a row of ~6000 nonzeros spans dozens of 128-item stretches (a chain
// the whole warp sums), beside rows spanning two or three (chains a team's lanes sum), empty rows
// and a stretch per team of one wave.
TEST(GpuOps, NnzSplitLongAndShortCarryChainsMatchTheReference) {
  SKIP_WITHOUT_GPU();
  Context ctx;
  const Csr<bf16, int32_t> csr = random_csr<bf16, int32_t>({700, 12000, 0.002, 0.3, 350}, 77);
  const Csr<bf16, int32_t> dcsr = csr.to(MemorySpace::device);
  const DenseMatrix<bf16> b = random_dense<bf16>(12000, 64, 78);
  const DenseMatrix<float> c0 = random_dense<float>(700, 64, 79);
  const DenseMatrix<bf16> db = b.to(MemorySpace::device);
  const auto want = reference::spmm(csr, b, 0.5, -1.5, &c0);
  for (const char* text : {"csr.nnz_split:g=8,ept=128", "csr.nnz_split:g=4,ept=128", "csr.nnz_split:g=8,ept=0",
                           "csr.nnz_split:g=8,ept=128,queue=0"}) {
    DenseMatrix<float> dc = c0.to(MemorySpace::device);
    ops::SpmmOptions options;
    options.alpha = 0.5f;
    options.beta = -1.5f;
    options.schedule = schedule::parse(schedule::Op::spmm, text);
    ops::spmm(ctx, dcsr.view(), db.view(), dc.view(), options);
    ctx.synchronize();
    EXPECT_LT(reference::relative_error(dc.to(MemorySpace::host).data(), want), 1e-5) << text;
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
  // B's rows 2 GiB apart (f32, ld = 2^29): the merge path, whose gathers use 32-bit strides,
  // refuses; the default takes the row split. B has one row, so only its first F floats exist.
  const Csr<float, int32_t> column = random_csr<float, int32_t>({50, 1, 0.6}, 6);
  const Csr<float, int32_t> dcolumn = column.to(MemorySpace::device);
  const DenseMatrix<float> one_row = random_dense<float>(1, 4, 7);
  const DenseMatrix<float> done_row = one_row.to(MemorySpace::device);
  const DenseView<const float> far{1, 4, int64_t(1) << 29, done_row.data(), MemorySpace::device};
  DenseMatrix<float> dout(50, 4, MemorySpace::device);
  options.schedule = schedule::parse(schedule::Op::spmm, "csr.merge_path");
  EXPECT_THAT(error_of([&] { ops::spmm(ctx, dcolumn.view(), far, dout.view(), options); }),
              ::testing::HasSubstr("over 2 GiB"));
  options.schedule.reset();
  ops::spmm(ctx, dcolumn.view(), far, dout.view(), options);
  ctx.synchronize();
  const DenseMatrix<float> got = dout.to(MemorySpace::host);
  EXPECT_LT(reference::relative_error(got.data(), reference::spmm(column, one_row)), 1e-6);
  // The same far rows as SDDMM's Y: csr.row_batch (32-bit gather strides too) is refused, by
  // can_implement through ops::sddmm and by its launcher called directly; the default (here the
  // row split; test_schedule checks the default rule's own condition) runs.
  const DenseMatrix<float> x = random_dense<float>(50, 4, 8);
  const DenseMatrix<float> dx = x.to(MemorySpace::device);
  Buffer<float> dedges(size_t(column.nnz()), MemorySpace::device);
  ops::SddmmOptions sddmm_options;
  sddmm_options.schedule = schedule::parse(schedule::Op::sddmm, "csr.row_batch:tpe=4,vec=4");
  EXPECT_THAT(error_of([&] { ops::sddmm(ctx, dcolumn.view(), dx.view(), far, dedges.data(), sddmm_options); }),
              ::testing::HasSubstr("over 2 GiB"));
  EXPECT_THAT(error_of([&] {
                ops::cuda::sddmm_csr_row_batch(ctx, dcolumn.view(), DenseView<const float>(dx.view()), far, false,
                                               dedges.data(), 4, 4);
              }),
              ::testing::HasSubstr("sddmm_csr_row_batch: Y's leading dimension 536870912 is a row stride over 2 GiB"));
  sddmm_options.schedule.reset();
  ops::sddmm(ctx, dcolumn.view(), dx.view(), far, dedges.data(), sddmm_options);
  ctx.synchronize();
  EXPECT_LT(reference::relative_error(dedges.to_vector().data(), reference::sddmm(column, x, one_row, false)),
            1e-6);
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
    for (int64_t F : {0, 1, 3, 33, 64, 257}) {  // F = 0: every output 0
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

// A deterministic SpMM, `runs` times on fresh copies of c0: the first result within 1e-5
// (relative) of `want`, every later one with the same bits. Returns the first.
template <class V>
std::vector<float> expect_right_and_repeatable(Context& ctx, const Csr<V, int32_t>& dcsr, const DenseMatrix<V>& db,
                                 const DenseMatrix<float>& c0, const ops::SpmmOptions& options,
                                 const std::vector<double>& want, int runs, const std::string& what) {
  std::vector<float> first;
  for (int run = 0; run < runs; ++run) {
    DenseMatrix<float> dc = c0.to(MemorySpace::device);
    ops::spmm(ctx, dcsr.view(), db.view(), dc.view(), options);
    ctx.synchronize();
    const std::vector<float> got = dc.buffer().to_vector();
    if (run == 0) {
      EXPECT_LT(reference::relative_error(got.data(), want), 1e-5) << what;
      first = got;
    } else {
      EXPECT_EQ(got, first) << what << " run " << run;
    }
  }
  return first;
}

// The row split's 1-wide gathers run in two forms, chosen by how much of the GPU the launch fills
// (a batch's gathers all in flight for small launches, rounds of 8 otherwise): both against the
// reference, on a matrix of 300k rows (filling the GPU) and one of 2,000 (not), with rows of about
// 20 entries and one of about 100 (several batches), odd F, alpha and beta; vec = 2 and 4 (one
// form) alike.
TEST(GpuOps, RowSplitSmallAndLargeLaunches) {
  SKIP_WITHOUT_GPU();
  Context ctx;
  uint64_t seed = 900;
  for (int64_t rows : {2000, 300000}) {
    const Csr<float, int32_t> csr = random_csr<float, int32_t>({rows, 200, 0.1, 0.1, 7}, ++seed);
    const Csr<float, int32_t> dcsr = csr.to(MemorySpace::device);
    for (int64_t F : {1, 3, 33, 36, 132}) {
      const DenseMatrix<float> b = random_dense<float>(csr.cols, F, ++seed);
      const DenseMatrix<float> c0 = random_dense<float>(csr.rows, F, ++seed);
      const DenseMatrix<float> db = b.to(MemorySpace::device);
      const auto want = reference::spmm(csr, b, 0.5, -1.5, &c0);
      for (const char* text : {"csr.row_split:tpr=32,rpb=4,vec=1", "csr.row_split:tpr=4,rpb=32,vec=1",
                               "csr.row_split:tpr=16,rpb=8,vec=2", "csr.row_split:tpr=8,rpb=16,vec=4",
                               "csr.row_split:tpr=32,rpb=4,vec=4"}) {
        const schedule::Schedule s = schedule::parse(schedule::Op::spmm, text);
        if (F % s.knob("vec") != 0) continue;  // vec = 2, 4 need aligned rows
        DenseMatrix<float> dc = c0.to(MemorySpace::device);
        ops::SpmmOptions options;
        options.alpha = 0.5f;
        options.beta = -1.5f;
        options.schedule = s;
        ops::spmm(ctx, dcsr.view(), db.view(), dc.view(), options);
        ctx.synchronize();
        const DenseMatrix<float> got = dc.to(MemorySpace::host);
        EXPECT_LT(reference::relative_error(got.data(), want), 1e-5) << rows << " rows, F=" << F << " " << text;
      }
    }
  }
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
                             "csr.merge_path:tpr=8,vec=1,ipt=256", "csr.merge_path:tpr=8,vec=4,ipt=64"}) {
      if (std::string(text).find("vec=4") != std::string::npos && F % 4 != 0) continue;
      ops::SpmmOptions options;
      options.alpha = 0.5f;
      options.beta = 2.0f;
      options.schedule = schedule::parse(schedule::Op::spmm, text);
      const std::string what = std::string(text) + " F=" + std::to_string(F);
      const std::vector<float> first = expect_right_and_repeatable(ctx, dcsr, db, c0, options, want, 3, what);
      {  // A stale row-length hint (short rows): the hub row's carries are added one by one rather
         // than by pieces (no hint here: pieces); still right, and the same bits on every run.
        Context misled;
        misled.set_row_length_hint(dcsr.indptr.data(), csr.rows, csr.nnz(), 8);
        expect_right_and_repeatable(misled, dcsr, db, c0, options, want, 2, what + " stale hint");
      }
      // B and C rows ld = F + 4 apart (the gathers step by B's stride, the stores by C's): the
      // same bits, and C's padding untouched.
      const int64_t ld = F + 4;  // rows stay 16-byte aligned for vec = 4
      std::vector<float> b_wide(size_t(csr.cols * ld), 7.0f), c_wide(size_t(csr.rows * ld), -2.0f);
      for (int64_t r = 0; r < csr.cols; ++r) std::copy_n(b.data() + r * F, F, b_wide.data() + r * ld);
      for (int64_t r = 0; r < csr.rows; ++r) std::copy_n(c0.data() + r * F, F, c_wide.data() + r * ld);
      const Buffer<float> db_wide(b_wide, MemorySpace::device);
      Buffer<float> dc_wide(c_wide, MemorySpace::device);
      ops::spmm(ctx, dcsr.view(), DenseView<const float>{csr.cols, F, ld, db_wide.data(), MemorySpace::device},
                DenseView<float>{csr.rows, F, ld, dc_wide.data(), MemorySpace::device}, options);
      ctx.synchronize();
      const std::vector<float> got = dc_wide.to_vector();
      for (int64_t r = 0; r < csr.rows; ++r) {
        for (int64_t f = 0; f < ld; ++f) {
          const float want_here = f < F ? first[size_t(r * F + f)] : -2.0f;
          ASSERT_EQ(got[size_t(r * ld + f)], want_here) << text << " F=" << F << " ld=" << ld << " row " << r;
        }
      }
    }
    // SDDMM over the same pattern: edge groups share the hub row too.
    const DenseMatrix<float> x = random_dense<float>(csr.rows, F, 5);
    const DenseMatrix<float> dx = x.to(MemorySpace::device);
    const auto want_sddmm = reference::sddmm(csr, x, b, false);
    for (const char* text : {"csr.edge_group:tpe=4,vec=1,ept=4", "csr.edge_group:tpe=32,vec=1,ept=256",
                             "csr.edge_batch:tpe=4,vec=1,ept=64", "csr.edge_batch:tpe=32,vec=1,ept=256",
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

// csr.nnz_split over the hub matrix in bf16: the hub row spans over a thousand 128-item
// stretches (each found by its own search, then one carry chain the whole warp sums), runs of
// empty rows fall inside stretches, and the last row ends the path. The same bits every run.
TEST(GpuOps, NnzSplitSharesAHubRowAndSkipsEmptyRuns) {
  SKIP_WITHOUT_GPU();
  Context ctx;
  const Csr<bf16, int32_t> csr = cast_values<bf16>(hub_matrix());
  const Csr<bf16, int32_t> dcsr = csr.to(MemorySpace::device);
  for (int64_t F : {32, 96}) {
    const DenseMatrix<bf16> b = random_dense<bf16>(csr.cols, F, 8);
    const DenseMatrix<float> c0 = random_dense<float>(csr.rows, F, 9);
    const DenseMatrix<bf16> db = b.to(MemorySpace::device);
    const auto want = reference::spmm(csr, b, 0.5, 2.0, &c0);
    for (const char* text : {"csr.nnz_split:g=8,ept=128", "csr.nnz_split:g=4,ept=512,queue=0",
                             "csr.nnz_split:g=8,ept=0", "csr.nnz_split:g=8,ept=4096"}) {
      ops::SpmmOptions options;
      options.alpha = 0.5f;
      options.beta = 2.0f;
      options.schedule = schedule::parse(schedule::Op::spmm, text);
      expect_right_and_repeatable(ctx, dcsr, db, c0, options, want, 2, std::string(text) + " F=" + std::to_string(F));
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
  // SDDMM with the [F, cols] factor described each of the three ways (B here plays Y).
  DenseMatrix<float> bt(36, 500);
  for (int64_t r = 0; r < 500; ++r) {
    for (int64_t f = 0; f < 36; ++f) bt.data()[f * 500 + r] = b.data()[r * 36 + f];
  }
  const DenseMatrix<float> dbt = bt.to(MemorySpace::device);
  using Layout = ops::CusparsePlan::SddmmLayout;
  for (Layout layout : {Layout::y_as_col_major, Layout::y_transposed, Layout::yt_row_major}) {
    Buffer<float> out(size_t(csr.nnz()), MemorySpace::device);
    ops::CusparsePlan plan = ops::CusparsePlan::sddmm(
        ctx, dcsr.view(), dx.view(), layout == Layout::yt_row_major ? dbt.view() : db.view(), out.data(), true,
        layout);
    plan.run();
    ctx.synchronize();
    EXPECT_LT(reference::relative_error(out.to_vector().data(), reference::sddmm(csr, x, b, false)), 1e-5)
        << "layout " << int(layout);
  }
  // Y^T's shape must match X: a [cols, F] Y passed as Y^T is refused.
  Buffer<float> out(size_t(csr.nnz()), MemorySpace::device);
  EXPECT_THAT(error_of([&] {
                ops::CusparsePlan::sddmm(ctx, dcsr.view(), dx.view(), db.view(), out.data(), true,
                                         Layout::yt_row_major);
              }),
              ::testing::HasSubstr("Y^T is 500 x 36; X has 36 columns and A 500"));
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
  // csr.nnz_split (16-bit values) in deterministic mode: with 128 items a team the long rows are
  // shared by several teams, whose carries meet in a fixed order.
  {
    const Csr<bf16, int32_t> dbf = cast_values<bf16>(csr).to(MemorySpace::device);
    const DenseMatrix<bf16> db16 = random_dense<bf16>(2000, 64, 12).to(MemorySpace::device);
    DenseMatrix<float> dc16(3000, 64, MemorySpace::device);
    ops::SpmmOptions options;
    options.deterministic = true;
    options.schedule = schedule::parse(schedule::Op::spmm, "csr.nnz_split:g=8,ept=128");
    ops::spmm(ctx, dbf.view(), db16.view(), dc16.view(), options);
    ctx.synchronize();
    const std::vector<float> first16 = dc16.buffer().to_vector();
    for (int run = 0; run < 3; ++run) {
      ops::spmm(ctx, dbf.view(), db16.view(), dc16.view(), options);
      ctx.synchronize();
      ASSERT_EQ(dc16.buffer().to_vector(), first16) << "csr.nnz_split run " << run;
    }
  }
  // SDDMM: the default, edge groups on a CSR and a COO, and edge batches over several passes of
  // F (passes after the first add to the outputs).
  const DenseMatrix<float> dx = random_dense<float>(3000, 70, 11).to(MemorySpace::device);
  const AnySparse<float, int32_t> dcoo = csr_to_coo(csr).to(MemorySpace::device);
  for (const char* text : {"", "csr.edge_group:tpe=4,vec=2,ept=32", "csr.edge_batch:tpe=4,vec=2,ept=64",
                           "csr.edge_batch:tpe=16,vec=1,ept=256", "coo.edge_group:tpe=8,vec=1,ept=64"}) {
    const bool coo = text[0] == 'c' && text[1] == 'o';
    ops::SddmmOptions options;
    if (text[0] != '\0') options.schedule = schedule::parse(schedule::Op::sddmm, text);
    const auto run_once = [&] {
      if (coo) {
        const AnySparse<float, int32_t> out = ops::sddmm(ctx, dcoo, dx.view(), db.view(), options);
        ctx.synchronize();
        return std::get<Coo<float, int32_t>>(out).values.to_vector();
      }
      Buffer<float> out(size_t(csr.nnz()), MemorySpace::device);
      ops::sddmm(ctx, dcsr.view(), dx.view(), db.view(), out.data(), options);
      ctx.synchronize();
      return out.to_vector();
    };
    const std::vector<float> sddmm_first = run_once();
    for (int run = 0; run < 3; ++run) ASSERT_EQ(run_once(), sddmm_first) << text << " run " << run;
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
  AnySparse<float, int32_t> dcoo = csr_to_coo(csr).to(MemorySpace::device);
  EXPECT_THAT(error_of([&] { ops::spmm(ctx, dcoo, db.view(), dc.view()); }),
              ::testing::HasSubstr("coo format runs on the host only"));
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

// ---- ELL, Hybrid and BSR on the device ---------------------------------------------------------

namespace {

// got (rows x F, packed) against the float64 result of alpha * A * B + beta * C0. rounding == 0:
// a relative error under 1e-5; otherwise every element within rounding x (the same product over
// |A|, |B| and |beta C0|): the bound for operands rounded to a tensor-core type whatever the
// cancellation.
template <class V, class I>
void expect_close(const float* got, const Csr<V, I>& csr, const DenseMatrix<V>& b, double alpha,
                  double beta, const DenseMatrix<float>& c0, double rounding, const std::string& where) {
  const auto want = reference::spmm(csr, b, alpha, beta, &c0);
  if (rounding == 0) {
    EXPECT_LT(reference::relative_error(got, want), 1e-5) << where;
    return;
  }
  Csr<V, I> abs_a = csr;
  for (int64_t e = 0; e < abs_a.nnz(); ++e) abs_a.values[e] = from_float<V>(std::fabs(to_float(csr.values[e])));
  DenseMatrix<V> abs_b = b.to(MemorySpace::host);
  for (int64_t i = 0; i < abs_b.rows() * abs_b.cols(); ++i) abs_b.data()[i] = from_float<V>(std::fabs(to_float(b.data()[i])));
  DenseMatrix<float> abs_c0 = c0.to(MemorySpace::host);
  for (int64_t i = 0; i < abs_c0.rows() * abs_c0.cols(); ++i) abs_c0.data()[i] = std::fabs(c0.data()[i]);
  const auto bound = reference::spmm(abs_a, abs_b, std::fabs(alpha), std::fabs(beta), &abs_c0);
  int64_t bad = 0, first_bad = -1;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!(std::fabs(double(got[i]) - want[i]) <= rounding * bound[i] + 1e-6)) {
      if (bad++ == 0) first_bad = int64_t(i);
    }
  }
  EXPECT_EQ(bad, 0) << where << ": first at " << first_bad << " got " << (bad ? got[first_bad] : 0.0f)
                    << " want " << (bad ? want[size_t(first_bad)] : 0.0);
}

// C from a device SpMM of any format against the float64 oracle (expect_close), plain (C
// poisoned with NaN: beta == 0 must not read it) and scaled (alpha = 0.5, beta = -1.5); with the
// default schedule also through padded B and C views.
template <class V, class I>
void expect_spmm_matches(Context& ctx, const AnySparse<V, I>& da, const Csr<V, I>& csr, int64_t F,
                         const std::optional<schedule::Schedule>& s, double rounding,
                         uint64_t seed, const std::string& what) {
  const DenseMatrix<V> b = random_dense<V>(csr.cols, F, seed);
  const DenseMatrix<float> c0 = random_dense<float>(csr.rows, F, seed + 1);
  DenseMatrix<float> poisoned = c0.to(MemorySpace::host);
  for (int64_t i = 0; i < poisoned.rows() * poisoned.cols(); ++i) poisoned.data()[i] = std::nanf("");
  const DenseMatrix<V> db = b.to(MemorySpace::device);
  for (bool scaled : {false, true}) {
    DenseMatrix<float> dc = (scaled ? c0 : poisoned).to(MemorySpace::device);
    ops::SpmmOptions options;
    options.alpha = scaled ? 0.5f : 1.0f;
    options.beta = scaled ? -1.5f : 0.0f;
    options.schedule = s;
    ops::spmm(ctx, da, db.view(), dc.view(), options);
    ctx.synchronize();
    const DenseMatrix<float> got = dc.to(MemorySpace::host);
    expect_close(got.data(), csr, b, options.alpha, options.beta, c0, rounding,
                 what + " F=" + std::to_string(F) + " " + (s ? s->to_string() : "default") +
                     (scaled ? " alpha=0.5 beta=-1.5" : ""));
  }
  if (s || F == 0) return;
  // The default schedule again with padded rows: B and C views whose leading dimension is F + 5
  // (odd for even F: the default must then give up vector loads), C's padding left untouched.
  const int64_t ld = F + 5;
  DenseMatrix<V> b_wide(csr.cols, ld, from_float<V>(7.0f));
  for (int64_t r = 0; r < csr.cols; ++r) {
    for (int64_t f = 0; f < F; ++f) b_wide.data()[r * ld + f] = b.data()[r * F + f];
  }
  const DenseMatrix<float> c_wide(csr.rows, ld, 3.0f);
  const DenseMatrix<V> db_wide = b_wide.to(MemorySpace::device);
  DenseMatrix<float> dc_wide = c_wide.to(MemorySpace::device);
  const DenseView<const V> bv{csr.cols, F, ld, db_wide.data(), MemorySpace::device};
  const DenseView<float> cv{csr.rows, F, ld, dc_wide.data(), MemorySpace::device};
  ops::SpmmOptions options;
  options.alpha = 0.5f;
  options.beta = -1.5f;
  ops::spmm(ctx, da, bv, cv, options);
  ctx.synchronize();
  const DenseMatrix<float> got = dc_wide.to(MemorySpace::host);
  std::vector<float> packed(size_t(csr.rows * F));
  bool padding_kept = true;
  for (int64_t r = 0; r < csr.rows; ++r) {
    for (int64_t f = 0; f < ld; ++f) {
      if (f < F) packed[size_t(r * F + f)] = got.data()[r * ld + f];
      else padding_kept = padding_kept && got.data()[r * ld + f] == 3.0f;
    }
  }
  expect_close(packed.data(), csr, b, 0.5, -1.5, DenseMatrix<float>(csr.rows, F, 3.0f), rounding,
               what + " F=" + std::to_string(F) + " ld=" + std::to_string(ld));
  EXPECT_TRUE(padding_kept) << what << " F=" << F << ": C's padding columns were written";
}

// A Hybrid whose odd-numbered parts are stored as CSR instead of ELL (the kernel takes both).
template <class V, class I>
Hybrid<V, I> with_csr_parts(Hybrid<V, I> h) {
  for (size_t p = 1; p < h.parts.size(); p += 2) {
    h.parts[p].matrix = ell_to_csr(std::get<Ell<V, I>>(h.parts[p].matrix));
  }
  return h;
}

}  // namespace

TYPED_TEST(GpuOps, SpmmEllAndHybridMatchTheReference) {
  SKIP_WITHOUT_GPU();
  using V = typename TypeParam::first_type;
  using I = typename TypeParam::second_type;
  Context ctx;
  uint64_t seed = 7000;
  const std::vector<const char*> ell_schedules = {"ell.row_split:tpr=1,rpb=64,vec=1",
                                                  "ell.row_split:tpr=8,rpb=16,vec=4",
                                                  "ell.row_split:tpr=32,rpb=1,vec=2"};
  const std::vector<const char*> hyb_schedules = {
      "hyb.fused:tpr=1,rpb=32,vec=1,atomic=0", "hyb.fused:tpr=4,rpb=32,vec=2,atomic=1",
      "hyb.fused:tpr=16,rpb=8,vec=4,atomic=0", "hyb.fused:tpr=32,rpb=4,vec=1,atomic=1"};
  // hyb(1, 0): every row split into width-1 pieces; hyb(3, 2): three column ranges, widths
  // 1..4; hyb(2, 5).
  const std::vector<HybParams> hyb_params = {{1, 0}, {3, 2}, {2, 5}};
  for (const auto& [name, shape] : awkward_shapes()) {
    const Csr<V, I> csr = random_csr<V, I>(shape, ++seed);
    const AnySparse<V, I> dell = csr_to_ell(csr).to(MemorySpace::device);
    for (int64_t F : {0, 1, 3, 33, 257}) {
      const schedule::Problem ell_problem =
          schedule::describe(schedule::Op::spmm, std::get<Ell<V, I>>(dell).view(), F, F, F);
      expect_spmm_matches<V, I>(ctx, dell, csr, F, std::nullopt, 0.0, ++seed, name + " ell");
      for (const char* text : ell_schedules) {
        const schedule::Schedule s = schedule::parse(schedule::Op::spmm, text);
        if (!schedule::can_implement(s, ell_problem)) continue;
        expect_spmm_matches<V, I>(ctx, dell, csr, F, s, 0.0, ++seed, name + " ell");
      }
      for (const HybParams& hp : hyb_params) {
        const Hybrid<V, I> hyb = csr_to_hybrid(csr, hp);
        for (bool mixed : {false, true}) {
          const AnySparse<V, I> dhyb = (mixed ? with_csr_parts(hyb) : hyb).to(MemorySpace::device);
          const std::string what = name + " hyb(" + std::to_string(hp.column_parts) + "," +
                                   std::to_string(hp.max_width_log2) + ")" + (mixed ? " +csr" : "");
          const schedule::Problem problem =
              schedule::describe(schedule::Op::spmm, std::get<Hybrid<V, I>>(dhyb), F, F, F);
          expect_spmm_matches<V, I>(ctx, dhyb, csr, F, std::nullopt, 0.0, ++seed, what);
          for (const char* text : hyb_schedules) {
            const schedule::Schedule s = schedule::parse(schedule::Op::spmm, text);
            if (!schedule::can_implement(s, problem)) continue;
            expect_spmm_matches<V, I>(ctx, dhyb, csr, F, s, 0.0, ++seed, what);
          }
        }
      }
    }
  }
}

TYPED_TEST(GpuOps, HybridWithManyPartsAndSplitHubRows) {
  SKIP_WITHOUT_GPU();
  using V = typename TypeParam::first_type;
  using I = typename TypeParam::second_type;
  Context ctx;
  // 16 column ranges x 6 width buckets: more parts than one launch takes (48), and hub rows
  // split into many pieces of the widest bucket.
  const Csr<V, I> csr = random_csr<V, I>({2000, 3000, 0.02, 0.05, 11}, 21);
  const Hybrid<V, I> hyb = csr_to_hybrid(csr, HybParams{16, 5});
  ASSERT_GT(hyb.parts.size(), 48u);
  const AnySparse<V, I> dhyb = hyb.to(MemorySpace::device);
  for (int atomic : {0, 1}) {
    const schedule::Schedule s = schedule::parse(
        schedule::Op::spmm, "hyb.fused:tpr=8,rpb=16,vec=4,atomic=" + std::to_string(atomic));
    expect_spmm_matches<V, I>(ctx, dhyb, csr, 64, s, 0.0, 31, "hyb(16,5)");
  }
  expect_spmm_matches<V, I>(ctx, dhyb, csr, 37, std::nullopt, 0.0, 32, "hyb(16,5)");
}

TEST(GpuOps, BsrBlocksTooLargeForTensorCoresGoToCusparse) {
  SKIP_WITHOUT_GPU();
  Context ctx;
  const Csr<float, int32_t> csr = random_csr<float, int32_t>({128, 192, 0.05, 0.2}, 41);
  const AnySparse<float, int32_t> dbsr = csr_to_bsr(csr, 64, 64).to(MemorySpace::device);
  const schedule::Problem problem =
      schedule::describe(schedule::Op::spmm, std::get<Bsr<float, int32_t>>(dbsr).view(), 16, 16, 16);
  EXPECT_EQ(schedule::default_schedule(problem).variant, "bsr.cusparse");
  expect_spmm_matches<float, int32_t>(ctx, dbsr, csr, 16, std::nullopt, 0.0, 42, "bsr 64x64");
  const schedule::Schedule bell = schedule::with_defaults(schedule::Op::spmm, "bsr.cusparse_blocked_ell");
  expect_spmm_matches<float, int32_t>(ctx, dbsr, csr, 16, bell, 0x1p-10, 45, "bsr 64x64 blocked-ELL");
  // No blocks at all: C = beta * C without asking cuSPARSE.
  const Csr<float, int32_t> empty = random_csr<float, int32_t>({128, 192, 0.0}, 43);
  const AnySparse<float, int32_t> dempty = csr_to_bsr(empty, 64, 64).to(MemorySpace::device);
  expect_spmm_matches<float, int32_t>(ctx, dempty, empty, 16, std::nullopt, 0.0, 44, "empty bsr 64x64");
  expect_spmm_matches<float, int32_t>(ctx, dempty, empty, 16, bell, 0.0, 46, "empty bsr 64x64 blocked-ELL");
}

TEST(GpuOps, WorkspaceKeepsItsContentsWhenItGrows) {
  SKIP_WITHOUT_GPU();
  Context ctx;
  std::vector<uint8_t> pattern(4096);
  for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = uint8_t(i * 7 + 1);
  void* small = ctx.workspace(pattern.size());
  TSR_CUDA_CHECK(cudaMemcpy(small, pattern.data(), pattern.size(), cudaMemcpyHostToDevice));
  void* grown = ctx.workspace(size_t(64) << 20);
  std::vector<uint8_t> back(pattern.size());
  TSR_CUDA_CHECK(cudaMemcpy(back.data(), grown, back.size(), cudaMemcpyDeviceToHost));
  EXPECT_EQ(back, pattern);
  EXPECT_EQ(ctx.workspace(16), grown) << "a smaller request keeps the block";
}

TYPED_TEST(GpuOps, SpmmBsrOnTensorCoresMatchesTheReference) {
  SKIP_WITHOUT_GPU();
  using V = typename TypeParam::first_type;
  using I = typename TypeParam::second_type;
  // f32 runs as tf32: both operands rounded to nearest with 10 mantissa bits (2^-11 each). bf16 /
  // f16 products are exact; their sums carry f32 accumulation in the tensor cores' order, which
  // a sum that cancels (one row, F = 1) shows as a relative error past 1e-5: bounded per element
  // by 2^-16 of the sum of |products| instead.
  const double rounding = std::is_same_v<V, float> ? 0x1p-10 : 0x1p-16;
  Context ctx;
  uint64_t seed = 9000;
  const std::vector<std::pair<int64_t, int64_t>> blocks = {{1, 1}, {4, 4}, {3, 5}, {16, 16},
                                                           {17, 9}, {32, 8}, {8, 64}, {2, 40}};
  for (const auto& [name, shape] : awkward_shapes()) {
    const Csr<V, I> csr = random_csr<V, I>(shape, ++seed);
    for (const auto& [r, c] : blocks) {
      const AnySparse<V, I> dbsr = csr_to_bsr(csr, r, c).to(MemorySpace::device);
      const std::string what = name + " bsr " + std::to_string(r) + "x" + std::to_string(c);
      for (int64_t F : {0, 1, 3, 33, 64, 100}) {
        expect_spmm_matches<V, I>(ctx, dbsr, csr, F, std::nullopt, rounding, ++seed, what);
        for (const char* text : {"bsr.tensor_core:ft=32,wpr=2", "bsr.tensor_core:ft=64,wpr=4"}) {
          const schedule::Schedule s = schedule::parse(schedule::Op::spmm, text);
          expect_spmm_matches<V, I>(ctx, dbsr, csr, F, s, rounding, ++seed, what);
        }
        const schedule::Problem problem =
            schedule::describe(schedule::Op::spmm, std::get<Bsr<V, I>>(dbsr).view(), F, F, F);
        const schedule::Schedule peer = schedule::with_defaults(schedule::Op::spmm, "bsr.cusparse");
        if (schedule::can_implement(peer, problem)) {
          expect_spmm_matches<V, I>(ctx, dbsr, csr, F, peer, 0.0, ++seed, what);
        }
        // Blocked-ELL (rows of blocks padded to the longest): cuSPARSE rounds f32 to tf32 there.
        const schedule::Schedule bell = schedule::with_defaults(schedule::Op::spmm, "bsr.cusparse_blocked_ell");
        if (schedule::can_implement(bell, problem)) {
          expect_spmm_matches<V, I>(ctx, dbsr, csr, F, bell, 0x1p-10, ++seed, what + " blocked-ELL");
        }
      }
    }
  }
}

TYPED_TEST(GpuOps, SpmmMaxMinMeanWithArgOutputsMatchTheReference) {
  SKIP_WITHOUT_GPU();
  using V = typename TypeParam::first_type;
  using I = typename TypeParam::second_type;
  Context ctx;
  uint64_t seed = 11000;
  const std::pair<ops::SpmmReduce, const char*> reductions[] = {
      {ops::SpmmReduce::max, "max"}, {ops::SpmmReduce::min, "min"}, {ops::SpmmReduce::mean, "mean"}};
  for (const auto& [name, shape] : awkward_shapes()) {
    const Csr<V, I> csr = random_csr<V, I>(shape, ++seed);
    const Csr<V, I> dcsr = csr.to(MemorySpace::device);
    // F = 36: four features a lane where rows are long (one_row_1x300), lanes past F in a group
    // of 16; F = 68: four features a lane everywhere, lanes past F in a warp.
    for (int64_t F : {0, 1, 3, 33, 36, 68, 257}) {
      const DenseMatrix<V> b = random_dense<V>(csr.cols, F, ++seed);
      const DenseMatrix<V> db = b.to(MemorySpace::device);
      const DenseMatrix<float> c0 = random_dense<float>(csr.rows, F, ++seed);
      for (const auto& [op, op_name] : reductions) {
        std::vector<int64_t> want_arg;
        const bool extreme = op != ops::SpmmReduce::mean;
        const std::vector<double> want = reference::spmm_reduce(csr, b, op_name, &want_arg);
        for (const float beta : {0.0f, 2.0f}) {
          DenseMatrix<float> dc = c0.to(MemorySpace::device);
          Buffer<int64_t> darg(std::vector<int64_t>(size_t(csr.rows * F), 42), MemorySpace::device);
          ops::SpmmOptions o;
          o.reduce = op;
          o.alpha = -0.5f;
          o.beta = beta;
          o.arg = extreme ? darg.data() : nullptr;
          ops::spmm(ctx, dcsr.view(), db.view(), dc.view(), o);
          ctx.synchronize();
          const std::vector<float> got = dc.buffer().to_vector();
          const std::vector<int64_t> arg = darg.to_vector();
          const std::string where = name + " " + op_name + " F=" + std::to_string(F) +
                                    " beta=" + std::to_string(beta);
          for (int64_t i = 0; i < csr.rows * F; ++i) {
            const double expect = -0.5 * want[size_t(i)] + double(beta) * double(c0.data()[i]);
            // max / min: f32 products, exact; the scaling rounds once or twice.
            ASSERT_NEAR(got[size_t(i)], expect, 1e-5 * (1 + std::fabs(expect))) << where << " at " << i;
            if (extreme) {
              ASSERT_EQ(arg[size_t(i)], want_arg[size_t(i)]) << where << " at " << i;
            }
          }
        }
      }
    }
  }
}

// The reductions split the merge path into stretches: a hub row's partials are combined across
// many of them, by whole pieces of 64 stretches. Against the reference on the hub matrix (ties of
// equal products, runs of empty rows; F = 68 takes four features a lane), the same bits on a
// second run; then ties and NaNs planted in different stretches and pieces of one row of 5000
// entries.
TEST(GpuOps, SpmmReductionsShareLongRowsAcrossStretches) {
  SKIP_WITHOUT_GPU();
  Context ctx;
  const Csr<float, int32_t> csr = hub_matrix();
  const Csr<float, int32_t> dcsr = csr.to(MemorySpace::device);
  const std::pair<ops::SpmmReduce, const char*> reductions[] = {
      {ops::SpmmReduce::max, "max"}, {ops::SpmmReduce::min, "min"}, {ops::SpmmReduce::mean, "mean"}};
  for (int64_t F : {5, 40, 68}) {
    const DenseMatrix<float> b = random_dense<float>(csr.cols, F, 31);
    const DenseMatrix<float> c0 = random_dense<float>(csr.rows, F, 32);
    const DenseMatrix<float> db = b.to(MemorySpace::device);
    for (const auto& [op, op_name] : reductions) {
      std::vector<int64_t> want_arg;
      const bool extreme = op != ops::SpmmReduce::mean;
      const std::vector<double> want = reference::spmm_reduce(csr, b, op_name, &want_arg);
      std::vector<float> first;
      for (int run = 0; run < 2; ++run) {
        DenseMatrix<float> dc = c0.to(MemorySpace::device);
        Buffer<int64_t> darg(std::vector<int64_t>(size_t(csr.rows * F), 42), MemorySpace::device);
        ops::SpmmOptions o;
        o.reduce = op;
        o.alpha = -0.5f;
        o.beta = 2.0f;
        o.arg = extreme ? darg.data() : nullptr;
        ops::spmm(ctx, dcsr.view(), db.view(), dc.view(), o);
        ctx.synchronize();
        const std::vector<float> got = dc.buffer().to_vector();
        if (run == 1) {
          ASSERT_EQ(std::memcmp(got.data(), first.data(), got.size() * sizeof(float)), 0)
              << op_name << " F=" << F;
          continue;
        }
        first = got;
        const std::vector<int64_t> arg = darg.to_vector();
        for (int64_t i = 0; i < csr.rows * F; ++i) {
          const double expect = -0.5 * want[size_t(i)] + 2.0 * double(c0.data()[i]);
          ASSERT_NEAR(got[size_t(i)], expect, 1e-5 * (1 + std::fabs(expect)))
              << op_name << " F=" << F << " at " << i;
          if (extreme) ASSERT_EQ(arg[size_t(i)], want_arg[size_t(i)]) << op_name << " F=" << F << " at " << i;
        }
      }
    }
  }
  // One row over columns 0..4999, values 1, B all ones but for B[j][0] = 2 at j = 1000, 2500,
  // 2600 and 4500 (ties between stretches, pieces and the stretches after the last whole piece,
  // of 32 items each here: the earliest wins) and NaNs at B[j][1] for j = 3000, 4000 and 4900
  // (the first wins).
  constexpr int32_t kLong = 5000;
  std::vector<int32_t> columns(kLong);
  for (int32_t j = 0; j < kLong; ++j) columns[size_t(j)] = j;
  const Csr<float, int32_t> row{1, kLong, Buffer<int32_t>(std::vector<int32_t>{0, kLong}),
                                Buffer<int32_t>(columns), Buffer<float>(std::vector<float>(kLong, 1.0f))};
  const Csr<float, int32_t> drow = row.to(MemorySpace::device);
  // Width 68 takes four features a lane: the ties and NaNs go to the first lane's first two
  // features and the last lane's last two as well.
  for (const int64_t width : {int64_t(2), int64_t(68)}) {
    DenseMatrix<float> ones(kLong, width, 1.0f);
    for (int64_t j : {1000, 2500, 2600, 4500}) ones.data()[j * width] = ones.data()[j * width + width - 2] = 2.0f;
    for (int64_t j : {3000, 4000, 4900}) ones.data()[j * width + 1] = ones.data()[j * width + width - 1] = NAN;
    const DenseMatrix<float> dones = ones.to(MemorySpace::device);
    DenseMatrix<float> dc(1, width, MemorySpace::device);
    Buffer<int64_t> darg(size_t(width), MemorySpace::device);
    ops::SpmmOptions o;
    o.arg = darg.data();
    for (ops::SpmmReduce op : {ops::SpmmReduce::max, ops::SpmmReduce::min}) {
      o.reduce = op;
      ops::spmm(ctx, drow.view(), dones.view(), dc.view(), o);
      ctx.synchronize();
      const std::vector<float> c = dc.buffer().to_vector();
      const std::vector<int64_t> arg = darg.to_vector();
      const bool is_max = op == ops::SpmmReduce::max;
      const std::string where = std::string(ops::spmm_reduce_name(op)) + " width " + std::to_string(width);
      for (int64_t f : {int64_t(0), width - 2}) {
        EXPECT_EQ(c[size_t(f)], is_max ? 2.0f : 1.0f) << where << " feature " << f;
        EXPECT_EQ(arg[size_t(f)], is_max ? 1000 : 0) << where << " feature " << f;
      }
      for (int64_t f : {int64_t(1), width - 1}) {
        EXPECT_TRUE(std::isnan(c[size_t(f)])) << where << " feature " << f;
        EXPECT_EQ(arg[size_t(f)], 3000) << where << " feature " << f;
      }
      if (width > 4) {
        EXPECT_EQ(c[2], 1.0f) << where;
        EXPECT_EQ(arg[2], 0) << where << ": the first of equal products";
      }
    }
  }
}

TEST(GpuOps, SpmmReductionTiesNanEmptyRowsAndErrors) {
  SKIP_WITHOUT_GPU();
  Context ctx;
  // Row 0: columns 2 and 0 give the same products: the first in the row's order wins. Row 1 is
  // empty. Row 2 meets a NaN, which wins.
  const Csr<float, int32_t> a{3, 4, Buffer<int32_t>(std::vector<int32_t>{0, 3, 3, 5}),
                              Buffer<int32_t>(std::vector<int32_t>{2, 0, 1, 3, 1}),
                              Buffer<float>(std::vector<float>{1.5f, 1.5f, 1.0f, 2.0f, 1.0f})};
  DenseMatrix<float> b(4, 2, 1.0f);
  b.data()[1 * 2 + 0] = -7.0f;
  b.data()[3 * 2 + 1] = NAN;
  const Csr<float, int32_t> da = a.to(MemorySpace::device);
  const DenseMatrix<float> db = b.to(MemorySpace::device);
  DenseMatrix<float> dc(3, 2, MemorySpace::device);
  Buffer<int64_t> darg(6, MemorySpace::device);
  ops::SpmmOptions o;
  o.reduce = ops::SpmmReduce::max;
  o.arg = darg.data();
  ops::spmm(ctx, da.view(), db.view(), dc.view(), o);
  ctx.synchronize();
  std::vector<float> c = dc.buffer().to_vector();
  std::vector<int64_t> arg = darg.to_vector();
  EXPECT_EQ(c[0], 1.5f);
  EXPECT_EQ(arg[0], 2) << "the tie goes to the first entry of the row (column 2)";
  EXPECT_EQ(c[2], 0.0f);
  EXPECT_EQ(arg[2], -1) << "an empty row";
  EXPECT_EQ(c[4], 2.0f);
  EXPECT_EQ(arg[4], 3);
  EXPECT_TRUE(std::isnan(c[5]));
  EXPECT_EQ(arg[5], 3);
  o.reduce = ops::SpmmReduce::min;
  ops::spmm(ctx, da.view(), db.view(), dc.view(), o);
  ctx.synchronize();
  c = dc.buffer().to_vector();
  arg = darg.to_vector();
  EXPECT_EQ(c[4], -7.0f);
  EXPECT_EQ(arg[4], 1);
  // A NaN after a finite best replaces it; a finite product after a NaN does not.
  const Csr<float, int32_t> late{1, 4, Buffer<int32_t>(std::vector<int32_t>{0, 3}),
                                 Buffer<int32_t>(std::vector<int32_t>{0, 3, 2}),
                                 Buffer<float>(std::vector<float>{1.0f, 1.0f, 5.0f})};
  const Csr<float, int32_t> dlate = late.to(MemorySpace::device);
  DenseMatrix<float> dc1(1, 2, MemorySpace::device);
  for (ops::SpmmReduce op : {ops::SpmmReduce::max, ops::SpmmReduce::min}) {
    o.reduce = op;
    ops::spmm(ctx, dlate.view(), db.view(), dc1.view(), o);
    ctx.synchronize();
    EXPECT_TRUE(std::isnan(dc1.buffer().to_vector()[1])) << ops::spmm_reduce_name(op);
    EXPECT_EQ(darg.to_vector()[1], 3) << ops::spmm_reduce_name(op);
  }
  o.reduce = ops::SpmmReduce::min;
  ops::spmm(ctx, da.view(), db.view(), dc.view(), o);
  ctx.synchronize();
  // The same bits on every run.
  for (int run = 0; run < 3; ++run) {
    ops::spmm(ctx, da.view(), db.view(), dc.view(), o);
    ctx.synchronize();
    ASSERT_EQ(dc.buffer().to_vector().size(), c.size());
    const std::vector<float> again = dc.buffer().to_vector();
    for (size_t i = 0; i < c.size(); ++i) {
      ASSERT_TRUE(std::memcmp(&again[i], &c[i], sizeof(float)) == 0) << "run " << run << " at " << i;
    }
  }
  // Strided B and C (windows of wider rows): the host kernel's bits, max / min with beta = 0
  // (f32 products and one scaling, rounded the same way on both sides).
  {
    const Csr<float, int32_t> m = random_csr<float, int32_t>({300, 200, 0.05, 0.2, 3}, 77);
    const DenseMatrix<float> wide_b = random_dense<float>(200, 29, 78);
    const DenseView<const float> hb{200, 23, 29, wide_b.data(), MemorySpace::host};
    const DenseMatrix<float> dwide_b = wide_b.to(MemorySpace::device);
    const DenseView<const float> dbv{200, 23, 29, dwide_b.data(), MemorySpace::device};
    const Csr<float, int32_t> dm = m.to(MemorySpace::device);
    for (ops::SpmmReduce op : {ops::SpmmReduce::max, ops::SpmmReduce::min}) {
      DenseMatrix<float> host_c(300, 31, -3.0f);
      DenseMatrix<float> dev_c = host_c.to(MemorySpace::device);
      std::vector<int64_t> host_arg(size_t(300 * 23));
      Buffer<int64_t> dev_arg(size_t(300 * 23), MemorySpace::device);
      ops::SpmmOptions so;
      so.reduce = op;
      so.alpha = 0.75f;
      so.arg = host_arg.data();
      ops::spmm(ctx, m.view(), hb, DenseView<float>{300, 23, 31, host_c.data(), MemorySpace::host}, so);
      so.arg = dev_arg.data();
      ops::spmm(ctx, dm.view(), dbv, DenseView<float>{300, 23, 31, dev_c.data(), MemorySpace::device}, so);
      ctx.synchronize();
      const std::vector<float> got = dev_c.buffer().to_vector();
      ASSERT_EQ(std::memcmp(got.data(), host_c.data(), got.size() * sizeof(float)), 0)
          << ops::spmm_reduce_name(op) << ": device and host differ (C's padding included)";
      EXPECT_EQ(dev_arg.to_vector(), host_arg) << ops::spmm_reduce_name(op);
    }
  }
  // Errors: a host arg for device operands, a device arg for host operands, a schedule, another
  // format.
  std::vector<int64_t> host_arg(6);
  o.arg = host_arg.data();
  EXPECT_THAT(error_of([&] { ops::spmm(ctx, da.view(), db.view(), dc.view(), o); }),
              ::testing::HasSubstr("the arg output must be in device memory"));
  o.arg = darg.data();
  DenseMatrix<float> hc(3, 2, 0.0f);
  EXPECT_THAT(error_of([&] { ops::spmm(ctx, a.view(), b.view(), hc.view(), o); }),
              ::testing::HasSubstr("the arg output must be in host memory when A is"));
  o.arg = nullptr;
  o.schedule = schedule::with_defaults(schedule::Op::spmm, "csr.row_split");
  EXPECT_THAT(error_of([&] { ops::spmm(ctx, da.view(), db.view(), dc.view(), o); }),
              ::testing::HasSubstr("reduce=min on the GPU runs kernels of its own"));
  o.schedule.reset();
  const AnySparse<float, int32_t> dell = csr_to_ell(a).to(MemorySpace::device);
  EXPECT_THAT(error_of([&] { ops::spmm(ctx, dell, db.view(), dc.view(), o); }),
              ::testing::HasSubstr("reduce=min takes CSR in this version, not ell"));
}

TEST(GpuOps, EllHybridAndBsrGiveTheSameBitsEveryRun) {
  SKIP_WITHOUT_GPU();
  Context ctx;
  const Csr<float, int32_t> csr = random_csr<float, int32_t>({3000, 2000, 0.01, 0.1, 7}, 9);
  const DenseMatrix<float> db = random_dense<float>(2000, 70, 10).to(MemorySpace::device);
  const std::vector<AnySparse<float, int32_t>> formats = {
      csr_to_ell(csr).to(MemorySpace::device), csr_to_hybrid(csr, HybParams{4, 3}).to(MemorySpace::device),
      csr_to_bsr(csr, 16, 16).to(MemorySpace::device)};
  for (const auto& a : formats) {
    DenseMatrix<float> dc(3000, 70, MemorySpace::device);
    ops::SpmmOptions options;
    options.deterministic = true;
    ops::spmm(ctx, a, db.view(), dc.view(), options);
    ctx.synchronize();
    const std::vector<float> first = dc.buffer().to_vector();
    for (int run = 0; run < 3; ++run) {
      ops::spmm(ctx, a, db.view(), dc.view(), options);
      ctx.synchronize();
      ASSERT_EQ(dc.buffer().to_vector(), first) << format_name(format_of(a)) << " run " << run;
    }
  }
}

TEST(GpuOps, BadEllHybridAndBsrInputGetsClearErrors) {
  SKIP_WITHOUT_GPU();
  Context ctx;
  const Csr<float, int32_t> csr = random_csr<float, int32_t>({40, 30, 0.2}, 3);
  const DenseMatrix<float> db = random_dense<float>(30, 8, 4).to(MemorySpace::device);
  DenseMatrix<float> dc(40, 8, MemorySpace::device);
  const auto run = [&](const AnySparse<float, int32_t>& a, ops::SpmmOptions o = {}) {
    return error_of([&] { ops::spmm(ctx, a, db.view(), dc.view(), o); });
  };
  Ell<float, int32_t> ell = csr_to_ell(csr);
  ell.indices[5] = 30;
  EXPECT_THAT(run(ell.to(MemorySpace::device)), ::testing::HasSubstr("Ell.indices[5] = 30 is outside [0, 30)"));
  Hybrid<float, int32_t> hyb = csr_to_hybrid(csr, HybParams{2, 2});
  hyb.parts[1].row_map[0] = 40;
  EXPECT_THAT(run(hyb.to(MemorySpace::device)),
              ::testing::HasSubstr("Hybrid.parts[1].row_map[0] = 40 is outside [0, 40)"));
  hyb = csr_to_hybrid(csr, HybParams{2, 2});
  auto& part_ell = std::get<Ell<float, int32_t>>(hyb.parts[0].matrix);
  part_ell.indices[0] = int32_t(hyb.parts[0].col_end);  // a column of the next range
  EXPECT_THAT(run(hyb.to(MemorySpace::device)), ::testing::HasSubstr("(the part's column range)"));
  Bsr<float, int32_t> bsr = csr_to_bsr(csr, 4, 4);
  bsr.indptr[2] = bsr.indptr[3] + 1;
  EXPECT_THAT(run(bsr.to(MemorySpace::device)), ::testing::HasSubstr("Bsr.indptr is not monotone"));
  // A Blocked-ELL plan made directly (no op-level validation) checks A before it copies it.
  Bsr<float, int32_t> bad_column = csr_to_bsr(csr, 2, 2);
  ASSERT_GE(bad_column.num_blocks(), 2);
  bad_column.indices[1] = 15;  // 30 columns: block columns 0 .. 14
  const Bsr<float, int32_t> dbad = bad_column.to(MemorySpace::device);
  EXPECT_THAT(error_of([&] {
                ops::CusparsePlan::spmm_blocked_ell(ctx, dbad.view(), db.view(), dc.view(), 1.0f,
                                                    0.0f, false);
              }),
              ::testing::HasSubstr("Bsr.indices[1] = 15 is outside [0, 15)"));
  // Schedules that cannot run the problem say why.
  ops::SpmmOptions o;
  o.deterministic = true;
  o.schedule = schedule::parse(schedule::Op::spmm, "hyb.fused:atomic=1");
  EXPECT_THAT(run(csr_to_hybrid(csr, HybParams{2, 2}).to(MemorySpace::device), o),
              ::testing::HasSubstr("deterministic mode needs atomic=0"));
  EXPECT_THAT(run(csr_to_bsr(csr, 64, 4).to(MemorySpace::device)),
              ::testing::HasSubstr("bsr.tensor_core takes blocks up to 32x64"));
  o = {};
  o.schedule = schedule::with_defaults(schedule::Op::spmm, "bsr.cusparse");
  EXPECT_THAT(run(csr_to_bsr(csr, 16, 16).to(MemorySpace::device), o),
              ::testing::HasSubstr("takes whole blocks only"));
  o.schedule = schedule::with_defaults(schedule::Op::spmm, "bsr.cusparse_blocked_ell");
  EXPECT_THAT(run(csr_to_bsr(csr, 4, 2).to(MemorySpace::device), o),
              ::testing::HasSubstr("bsr.cusparse_blocked_ell takes square blocks only"));
  o.schedule = schedule::with_defaults(schedule::Op::spmm, "csr.row_split");
  EXPECT_THAT(run(csr_to_ell(csr).to(MemorySpace::device), o), ::testing::HasSubstr("takes csr, the matrix is ell"));
  // A host matrix with device operands.
  EXPECT_THAT(run(csr_to_ell(csr)),
              ::testing::HasSubstr("B is in device memory but the sparse matrix is in host memory"));
}

TYPED_TEST(GpuOps, SddmmCooMatchesTheReferenceInAnyEntryOrder) {
  SKIP_WITHOUT_GPU();
  using V = typename TypeParam::first_type;
  using I = typename TypeParam::second_type;
  Context ctx;
  uint64_t seed = 11000;
  const std::vector<const char*> spread = {"coo.edge_group:tpe=4,vec=1,ept=4",
                                           "coo.edge_group:tpe=8,vec=4,ept=256",
                                           "coo.edge_group:tpe=32,vec=2,ept=16"};
  for (const auto& [name, shape] : awkward_shapes()) {
    Coo<V, I> coo = csr_to_coo(random_csr<V, I>(shape, ++seed));
    // Entries in a random order: a COO's rows need not be grouped.
    Rng rng(++seed);
    for (int64_t e = coo.nnz() - 1; e > 0; --e) {
      const int64_t j = int64_t(rng.uniform() * double(e + 1)) % (e + 1);
      std::swap(coo.row[e], coo.row[j]);
      std::swap(coo.col[e], coo.col[j]);
      std::swap(coo.values[e], coo.values[j]);
    }
    const AnySparse<V, I> dcoo = coo.to(MemorySpace::device);
    for (int64_t F : {0, 1, 3, 33, 64, 257}) {
      const DenseMatrix<V> x = random_dense<V>(coo.rows, F, ++seed);
      const DenseMatrix<V> y = random_dense<V>(coo.cols, F, ++seed);
      const DenseMatrix<V> dx = x.to(MemorySpace::device), dy = y.to(MemorySpace::device);
      for (bool scale : {false, true}) {
        std::vector<double> want(size_t(coo.nnz()));
        for (int64_t e = 0; e < coo.nnz(); ++e) {
          double dot = 0;
          for (int64_t f = 0; f < F; ++f) {
            dot += double(to_float(x.data()[coo.row[e] * F + f])) * double(to_float(y.data()[coo.col[e] * F + f]));
          }
          want[size_t(e)] = scale ? dot * double(to_float(coo.values[e])) : dot;
        }
        const schedule::Problem problem =
            schedule::describe(schedule::Op::sddmm, std::get<Coo<V, I>>(dcoo).view(), F, F, F);
        std::vector<std::optional<schedule::Schedule>> schedules{std::nullopt};
        for (const char* text : spread) {
          const schedule::Schedule s = schedule::parse(schedule::Op::sddmm, text);
          if (schedule::can_implement(s, problem)) schedules.push_back(s);
        }
        for (const auto& s : schedules) {
          ops::SddmmOptions o;
          o.scale_by_a = scale;
          o.schedule = s;
          const AnySparse<float, I> out = ops::sddmm(ctx, dcoo, dx.view(), dy.view(), o);
          ctx.synchronize();
          const auto& got = std::get<Coo<float, I>>(out);
          ASSERT_EQ(got.space(), MemorySpace::device);
          EXPECT_LT(reference::relative_error(got.values.to_vector().data(), want), 1e-5)
              << name << " F=" << F << " " << (s ? s->to_string() : "default") << (scale ? " scaled" : "");
        }
      }
    }
  }
}

TEST(GpuOps, BadDeviceCooGetsAClearError) {
  SKIP_WITHOUT_GPU();
  Context ctx;
  Coo<float, int32_t> coo = csr_to_coo(random_csr<float, int32_t>({40, 30, 0.2}, 3));
  coo.row[7] = 40;
  const DenseMatrix<float> dx = random_dense<float>(40, 8, 1).to(MemorySpace::device);
  const DenseMatrix<float> dy = random_dense<float>(30, 8, 2).to(MemorySpace::device);
  EXPECT_THAT(error_of([&] { ops::sddmm(ctx, AnySparse<float, int32_t>(coo.to(MemorySpace::device)), dx.view(), dy.view()); }),
              ::testing::HasSubstr("Coo.row[7] = 40 is outside [0, 40)"));
  const AnySparse<float, int32_t> dell = csr_to_ell(random_csr<float, int32_t>({40, 30, 0.2}, 3)).to(MemorySpace::device);
  EXPECT_THAT(error_of([&] { ops::sddmm(ctx, dell, dx.view(), dy.view()); }),
              ::testing::HasSubstr("device SDDMM takes CSR and COO"));
}

// Views whose first element sits off a 16-byte boundary (slices of a larger allocation), with F
// and the leading dimensions allowing vec = 4: the defaults narrow their vector loads to the base
// alignment (Problem::operand_align) instead of faulting on a misaligned address, and write
// nothing outside the output view.
TYPED_TEST(GpuOps, DefaultsTakeViewsStartingOffAVectorBoundary) {
  SKIP_WITHOUT_GPU();
  using V = typename TypeParam::first_type;
  using I = typename TypeParam::second_type;
  Context ctx;
  const int64_t F = 64;
  uint64_t seed = 12000;
  const Csr<V, I> csr = random_csr<V, I>({150, 400, 0.02, 0.1, 17}, ++seed);
  const DenseMatrix<V> x = random_dense<V>(csr.rows, F, ++seed);
  const DenseMatrix<V> y = random_dense<V>(csr.cols, F, ++seed);  // also SpMM's B
  const DenseMatrix<float> zeros(csr.rows, F, 0.0f);
  const double tensor_core_rounding = std::is_same_v<V, float> ? 0x1p-10 : 0x1p-16;
  for (int64_t offset : {1, 2, 3}) {  // elements past the allocation's 256-byte-aligned start
    const std::string at = " offset " + std::to_string(offset);
    const auto shifted = [&](const DenseMatrix<V>& m) {
      std::vector<V> v(size_t(m.rows() * F + offset + 1), from_float<V>(5.0f));
      std::copy_n(m.data(), size_t(m.rows() * F), v.begin() + offset);
      return Buffer<V>(v, MemorySpace::device);
    };
    const Buffer<V> dx = shifted(x), dy = shifted(y);
    const DenseView<const V> xv{csr.rows, F, F, dx.data() + offset, MemorySpace::device};
    const DenseView<const V> yv{csr.cols, F, F, dy.data() + offset, MemorySpace::device};
    const std::vector<std::pair<std::string, AnySparse<V, I>>> formats = {
        {"csr", csr.to(MemorySpace::device)},
        {"ell", csr_to_ell(csr).to(MemorySpace::device)},
        {"hyb(3,2)", csr_to_hybrid(csr, HybParams{3, 2}).to(MemorySpace::device)},
        {"bsr 4x4", csr_to_bsr(csr, 4, 4).to(MemorySpace::device)}};
    for (const auto& [name, da] : formats) {
      Buffer<float> dc(std::vector<float>(size_t(csr.rows * F + offset + 1), 3.0f), MemorySpace::device);
      ops::spmm(ctx, da, yv, DenseView<float>{csr.rows, F, F, dc.data() + offset, MemorySpace::device});
      ctx.synchronize();
      const std::vector<float> got = dc.to_vector();
      expect_close(got.data() + offset, csr, y, 1.0, 0.0, zeros, name == "bsr 4x4" ? tensor_core_rounding : 0.0,
                   "spmm " + name + at);
      EXPECT_EQ(got.front(), 3.0f) << name << at << ": written before C's view";
      EXPECT_EQ(got.back(), 3.0f) << name << at << ": written past C's view";
    }
    for (bool scale : {false, true}) {
      const auto want = reference::sddmm(csr, x, y, scale);
      ops::SddmmOptions o;
      o.scale_by_a = scale;
      const AnySparse<float, I> by_csr = ops::sddmm(ctx, AnySparse<V, I>(csr.to(MemorySpace::device)), xv, yv, o);
      const AnySparse<float, I> by_coo =
          ops::sddmm(ctx, AnySparse<V, I>(csr_to_coo(csr).to(MemorySpace::device)), xv, yv, o);
      ctx.synchronize();
      EXPECT_LT(reference::relative_error(std::get<Csr<float, I>>(by_csr).values.to_vector().data(), want), 1e-5)
          << "sddmm csr" << at << " scale=" << scale;
      EXPECT_LT(reference::relative_error(std::get<Coo<float, I>>(by_coo).values.to_vector().data(), want), 1e-5)
          << "sddmm coo" << at << " scale=" << scale;
    }
  }
}
