// GPU SpMM and SDDMM on the real matrices (the shared SuiteSparse files and Cora) against the
// float64 oracle: the default schedule, a spread of fixed schedules of every variant, and
// cuSPARSE, at awkward and ordinary feature widths. Skips without a device or without the data
// ($TESSERA_DATA, or ../shared/data beside the checkout).
#include <gtest/gtest.h>

#include <filesystem>

#include "core/device.h"
#include "formats/convert.h"
#include "formats/io.h"
#include "ops/sddmm/sddmm.h"
#include "ops/spmm/spmm.h"
#include "schedule/schedule.h"
#include "tests/reference/reference.h"
#include "tests/test_util.h"

namespace tessera {
namespace {

struct RealMatrix {
  std::string name;
  Csr<float, int32_t> csr;
};

std::vector<RealMatrix> real_matrices() {
  namespace fs = std::filesystem;
  const fs::path dir = tessera::testing::shared_data_dir();
  std::vector<RealMatrix> out;
  for (const char* name : {"bcsstk13", "bcsstk33", "fidapex6", "add32", "luxembourg", "ca-GrQc"}) {
    const fs::path path = dir / "mtx" / (std::string(name) + ".mtx");
    if (fs::exists(path)) {
      out.push_back(
          {name, canonicalize(coo_to_csr(read_matrix_market<float, int32_t>(path.string())))});
    }
  }
  const fs::path cora = dir / "cora" / "cora.cites";
  if (fs::exists(cora)) {
    EdgeListOptions o;
    o.symmetrize = true;
    o.compact_ids = true;
    out.push_back(
        {"cora", canonicalize(coo_to_csr(read_edge_list<float, int32_t>(cora.string(), o)))});
  }
  return out;
}

// The default schedule, a spread of every variant's knobs, and cuSPARSE (where they apply).
std::vector<schedule::Schedule> schedules_for(const schedule::Problem& p) {
  std::vector<schedule::Schedule> out{schedule::default_schedule(p)};
  const std::vector<const char*> spread =
      p.op == schedule::Op::spmm
          ? std::vector<const char*>{"csr.row_split:tpr=1,rpb=64,vec=1",
                                     "csr.row_split:tpr=8,rpb=16,vec=4",
                                     "csr.row_split:tpr=32,rpb=4,vec=2",
                                     "csr.merge_path:tpr=4,vec=1,ipt=32",
                                     "csr.merge_path:tpr=16,vec=2,ipt=256",
                                     "csr.merge_path:tpr=32,vec=4,ipt=8192",
                                     "csr.cusparse:alg=2"}
          : std::vector<const char*>{
                "csr.row_split:tpr=4,vec=4",           "csr.row_split:tpr=32,vec=1",
                "csr.edge_group:tpe=4,vec=2,ept=4",    "csr.edge_group:tpe=8,vec=4,ept=64",
                "csr.edge_group:tpe=32,vec=1,ept=256", "csr.edge_batch:tpe=8,vec=4,ept=256",
                "csr.edge_batch:tpe=4,vec=2,ept=64",   "csr.row_batch:tpe=4,vec=1",
                "csr.row_batch:tpe=8,vec=4",           "csr.cusparse"};
  for (const char* text : spread) {
    const schedule::Schedule s = schedule::parse(p.op, text);
    if (schedule::can_implement(s, p)) out.push_back(s);
  }
  return out;
}

TEST(GpuRealMatrices, SpmmAndSddmmMatchTheReference) {
  if (!device::available()) GTEST_SKIP() << "no CUDA device";
  const std::vector<RealMatrix> matrices = real_matrices();
  if (matrices.empty())
    GTEST_SKIP() << "shared data not present under " << tessera::testing::shared_data_dir();
  Context ctx;
  uint64_t seed = 900;
  for (const RealMatrix& m : matrices) {
    const Csr<float, int32_t> da = m.csr.to(MemorySpace::device);
    for (int64_t F : {1, 33, 128}) {
      const DenseMatrix<float> b = tessera::testing::random_dense<float>(m.csr.cols, F, ++seed);
      const DenseMatrix<float> db = b.to(MemorySpace::device);
      const auto want = reference::spmm(m.csr, b);
      const schedule::Problem sp = schedule::describe(schedule::Op::spmm, da.view(), F, F, F);
      for (const schedule::Schedule& s : schedules_for(sp)) {
        DenseMatrix<float> dc(m.csr.rows, F, MemorySpace::device);
        ops::SpmmOptions o;
        o.schedule = s;
        ops::spmm(ctx, da.view(), db.view(), dc.view(), o);
        ctx.synchronize();
        const DenseMatrix<float> got = dc.to(MemorySpace::host);
        EXPECT_LT(reference::relative_error(got.data(), want), 1e-5)
            << m.name << " spmm F=" << F << " " << s.to_string();
      }
      const DenseMatrix<float> x = tessera::testing::random_dense<float>(m.csr.rows, F, ++seed);
      const DenseMatrix<float> dx = x.to(MemorySpace::device);
      const auto want_sddmm = reference::sddmm(m.csr, x, b, true);
      const schedule::Problem dp = schedule::describe(schedule::Op::sddmm, da.view(), F, F, F);
      for (const schedule::Schedule& s : schedules_for(dp)) {
        Buffer<float> out(std::vector<float>(size_t(m.csr.nnz()), std::nanf("")),
                          MemorySpace::device);
        ops::SddmmOptions o;
        o.scale_by_a = true;
        o.schedule = s;
        ops::sddmm(ctx, da.view(), dx.view(), db.view(), out.data(), o);
        ctx.synchronize();
        const std::vector<float> got = out.to_vector();
        EXPECT_LT(reference::relative_error(got.data(), want_sddmm), 1e-5)
            << m.name << " sddmm F=" << F << " " << s.to_string();
      }
    }
  }
}

}  // namespace
}  // namespace tessera
