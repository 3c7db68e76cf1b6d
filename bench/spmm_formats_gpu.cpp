// GPU SpMM on the other device formats, side by side with the peers a user would pick instead, in
// one run on one device (DESIGN.md, "How performance is measured"):
//   BSR     bsr.tensor_core (f32 as tf32, and bf16) vs cuSPARSE's BSR SpMM (bsr.cusparse, f32,
//           the plan made and preprocessed once), its Blocked-ELL SpMM (the Blocked-ELL copy
//           made once, in the plan), and vs cuSPARSE's best CSR algorithm and our CSR default
//           on the same matrix;
//   Hybrid  hyb.fused (two-pass and atomic) on hyb(1, 5) and hyb(4, 5) vs our CSR default and
//           cuSPARSE's best CSR algorithm; hyb(1, 5) two-pass also in bf16 against its f32.
// Matrices: random block-sparse matrices (dense 16x16 / 32x32 blocks, as pruned weights are),
// a clustered graph in 16x16 blocks (partly filled), bcsstk33 in 4x4 blocks, and for Hybrid the
// SuiteSparse files, Cora and an arxiv-shaped R-MAT graph. CUDA-event timing after warm-up,
// median of --reps runs, L2 flushed before every run; every output checked against cuSPARSE's
// CSR result. Writes <out>/<device>/spmm_formats.json (top-level `summary`) and prints tables.
//   spmm_formats_gpu [--out DIR] [--data DIR] [--features 32,64,...] [--reps N]
#include <CLI/CLI.hpp>
#include <fstream>
#include <nlohmann/json.hpp>

#include "bench/gpu_harness.h"
#include "core/device.h"
#include "core/random.h"
#include "core/timer.h"
#include "ops/cusparse_plan.h"
#include "ops/spmm/spmm.h"
#include "schedule/schedule.h"

using namespace tessera;
using namespace tessera::bench;
using json = nlohmann::ordered_json;

namespace {

// n x n with dense block x block blocks, each present with probability density.
Csr<float, int32_t> block_sparse(int64_t n, int64_t block, double density, uint64_t seed) {
  Rng rng(seed);
  const int64_t nb = n / block;
  std::vector<std::vector<int32_t>> chosen(static_cast<size_t>(nb));
  for (int64_t i = 0; i < nb; ++i) {
    for (int64_t j = 0; j < nb; ++j) {
      if (rng.uniform() < density) chosen[size_t(i)].push_back(int32_t(j));
    }
  }
  Coo<float, int32_t> coo;
  coo.rows = coo.cols = n;
  std::vector<int32_t> rows, cols;
  std::vector<float> values;
  for (int64_t i = 0; i < nb; ++i) {
    for (int64_t r = 0; r < block; ++r) {
      for (int32_t j : chosen[size_t(i)]) {
        for (int64_t c = 0; c < block; ++c) {
          rows.push_back(int32_t(i * block + r));
          cols.push_back(int32_t(j * block + c));
          values.push_back(float(rng.uniform() * 2 - 1));
        }
      }
    }
  }
  coo.row = Buffer<int32_t>(rows);
  coo.col = Buffer<int32_t>(cols);
  coo.values = Buffer<float>(values);
  return coo_to_csr(coo);
}

struct Peers {
  double cusparse_csr_ms = INFINITY;
  std::vector<float> want;  // cuSPARSE's CSR output: the check for every other variant
  double our_csr_ms = 0;
};

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{"GPU SpMM on BSR and Hybrid: Tessera vs cuSPARSE"};
  std::string out_dir = "bench/results", data_dir = TESSERA_SHARED_DATA;
  std::vector<int64_t> features{32, 64, 128, 256};
  int reps = 20;
  app.add_option("--out", out_dir, "results folder; the file goes to <out>/<device>/spmm_formats.json");
  app.add_option("--data", data_dir, "shared data folder (SuiteSparse .mtx under mtx/)");
  app.add_option("--features", features, "feature widths F")->delimiter(',');
  app.add_option("--reps", reps, "timed repetitions per variant (median reported)");
  if (const int code = bench::parse_command_line(app, argc, argv); code >= 0) return code;
  TSR_CHECK(device::available(), "spmm_formats_gpu needs a CUDA device");
  Context ctx;
  Timer timer(ctx);
  const std::string device_name = device::name(ctx.device());
  const std::filesystem::path dir = std::filesystem::path(out_dir) / device::tag(ctx.device());
  std::filesystem::create_directories(dir);

  // CSR peers of one problem: cuSPARSE's best algorithm and our default schedule.
  const auto csr_peers = [&](const Csr<float, int32_t>& da, const DenseMatrix<float>& db,
                             DenseMatrix<float>& dc) {
    Peers p;
    for (int alg : {1, 2, 3}) {
      ops::CusparsePlan plan = ops::CusparsePlan::spmm(ctx, da.view(), db.view(), dc.view(), 1.0f, 0.0f, alg);
      p.cusparse_csr_ms = std::min(p.cusparse_csr_ms, timer.median_ms([&] { plan.run(); }, reps));
      if (p.want.empty()) {
        ctx.synchronize();
        p.want = dc.buffer().to_vector();
      }
    }
    ops::SpmmOptions o;
    o.validate = false;
    p.our_csr_ms = timer.median_ms([&] { ops::spmm(ctx, da.view(), db.view(), dc.view(), o); }, reps);
    return p;
  };
  // Times run() and checks its output against want.
  const auto timed = [&](const std::string& what, const std::vector<float>& want, double tolerance,
                         DenseMatrix<float>& dc, const std::function<void()>& run) {
    run();
    ctx.synchronize();
    const double err = relative_error(dc.buffer().to_vector(), want);
    TSR_CHECK(err < tolerance, what, " differs from cuSPARSE's CSR result by ", err);
    return timer.median_ms(run, reps);
  };

  json bsr_cases = json::array(), hyb_cases = json::array();
  std::vector<double> vs_bsr_peer, vs_bell_peer, vs_block_peer, vs_csr_peer, bf16_vs_f32, hyb_vs_csr,
      hyb_vs_cusparse, hyb_bf16_vs_f32;

  // ---- BSR ----
  struct BlockCase {
    std::string name;
    Csr<float, int32_t> csr;
    int64_t block;
  };
  std::vector<BlockCase> block_cases;
  block_cases.push_back({"blocksparse-16x16-5%", block_sparse(16384, 16, 0.05, 1), 16});
  block_cases.push_back({"blocksparse-32x32-2%", block_sparse(16384, 32, 0.02, 2), 32});
  block_cases.push_back(
      {"clustered-16x16", generate_clustered<float, int32_t>(65536, 64, 0.3, 2e-5, GenValues{3, false}), 16});
  const std::filesystem::path bcsstk33 = std::filesystem::path(data_dir) / "mtx" / "bcsstk33.mtx";
  if (std::filesystem::exists(bcsstk33)) {
    Csr<float, int32_t> m = canonicalize(coo_to_csr(read_matrix_market<float, int32_t>(bcsstk33.string())));
    block_cases.push_back({"bcsstk33-4x4", std::move(m), 4});
  }
  std::printf("| matrix | block | fill | F | tc f32 ms | best | tc bf16 ms | cuSPARSE BSR ms | cuSPARSE Blocked-ELL ms | cuSPARSE CSR ms | our CSR ms | tc/cuSPARSE BSR | tc/cuSPARSE Blocked-ELL | tc/cuSPARSE CSR | bf16/f32 |\n");
  std::printf("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (BlockCase& bc : block_cases) {
    // Pad to whole blocks so cuSPARSE's BSR (whole blocks only) runs the same problem.
    Csr<float, int32_t>& csr = bc.csr;
    const int64_t rows = (csr.rows + bc.block - 1) / bc.block * bc.block;
    const int64_t cols = (csr.cols + bc.block - 1) / bc.block * bc.block;
    if (rows != csr.rows || cols != csr.cols) {
      std::vector<int32_t> indptr(csr.indptr.begin(), csr.indptr.end());
      indptr.resize(size_t(rows) + 1, indptr.back());
      csr = Csr<float, int32_t>{rows, cols, Buffer<int32_t>(indptr), csr.indices, csr.values};
    }
    const Bsr<float, int32_t> bsr = csr_to_bsr(csr, bc.block, bc.block);
    const double fill = double(csr.nnz()) / double(bsr.num_blocks() * bc.block * bc.block);
    const Csr<float, int32_t> da = csr.to(MemorySpace::device);
    const Bsr<float, int32_t> dbsr = bsr.to(MemorySpace::device);
    const Bsr<bf16, int32_t> dbsr16 = csr_to_bsr(cast_values<bf16>(csr), bc.block, bc.block).to(MemorySpace::device);
    for (int64_t F : features) {
      const DenseMatrix<float> db = uniform_dense<float>(cols, F, 7).to(MemorySpace::device);
      const DenseMatrix<bf16> db16 = uniform_dense<bf16>(cols, F, 7).to(MemorySpace::device);
      DenseMatrix<float> dc(rows, F, MemorySpace::device);
      const Peers peers = csr_peers(da, db, dc);
      ops::SpmmOptions o;
      o.validate = false;
      const std::string what = bc.name + " F=" + std::to_string(F);
      const AnySparse<float, int32_t> any_bsr(dbsr);
      const double tc_ms = timed(what + " bsr.tensor_core f32", peers.want, 5e-3, dc, [&] {
        ops::spmm(ctx, any_bsr, db.view(), dc.view(), o);
      });
      // The sweep: every bsr.tensor_core schedule.
      const schedule::Problem problem = schedule::describe(schedule::Op::spmm, dbsr.view(), F, F, F);
      const schedule::Schedule def = schedule::default_schedule(problem);
      std::string best_schedule = def.to_string();
      double best_ms = tc_ms;
      json sweep = json::object();
      for (const schedule::Schedule& s : schedule::space(problem)) {
        if (s.variant != "bsr.tensor_core") continue;
        ops::SpmmOptions so = o;
        so.schedule = s;
        const double ms = timed(what + " " + s.to_string(), peers.want, 5e-3, dc,
                                [&] { ops::spmm(ctx, any_bsr, db.view(), dc.view(), so); });
        sweep[s.to_string()] = ms;
        if (ms < best_ms) best_ms = ms, best_schedule = s.to_string();
      }
      const AnySparse<bf16, int32_t> any_bsr16(dbsr16);
      const double tc16_ms = timed(what + " bsr.tensor_core bf16", peers.want, 2e-2, dc, [&] {
        ops::spmm(ctx, any_bsr16, db16.view(), dc.view(), o);
      });
      ops::CusparsePlan plan = ops::CusparsePlan::spmm_bsr(ctx, dbsr.view(), db.view(), dc.view(), 1.0f, 0.0f);
      const double peer_ms = timed(what + " cuSPARSE BSR", peers.want, 1e-4, dc, [&] { plan.run(); });
      ops::CusparsePlan bell = ops::CusparsePlan::spmm_blocked_ell(ctx, dbsr.view(), db.view(), dc.view(), 1.0f, 0.0f);
      bell.run();
      ctx.synchronize();
      const double bell_error = relative_error(dc.buffer().to_vector(), peers.want);  // tf32 or not: recorded
      const double bell_ms = timed(what + " cuSPARSE Blocked-ELL", peers.want, 5e-3, dc, [&] { bell.run(); });
      vs_bsr_peer.push_back(peer_ms / tc_ms);
      vs_bell_peer.push_back(bell_ms / tc_ms);
      vs_block_peer.push_back(std::min(peer_ms, bell_ms) / tc_ms);
      vs_csr_peer.push_back(peers.cusparse_csr_ms / tc_ms);
      bf16_vs_f32.push_back(tc_ms / tc16_ms);
      const double flops = 2.0 * double(bsr.num_blocks()) * double(bc.block * bc.block) * double(F);
      bsr_cases.push_back({{"matrix", bc.name}, {"rows", rows}, {"nnz", csr.nnz()},
                           {"block", bc.block}, {"blocks", bsr.num_blocks()}, {"fill", fill}, {"F", F},
                           {"default_schedule", def.to_string()}, {"tensor_core_f32_ms", tc_ms},
                           {"best_schedule", best_schedule}, {"best_f32_ms", best_ms},
                           {"tensor_core_bf16_ms", tc16_ms},
                           {"cusparse_bsr_ms", peer_ms}, {"cusparse_blocked_ell_ms", bell_ms},
                           {"cusparse_blocked_ell_relative_error", bell_error},
                           {"cusparse_csr_best_ms", peers.cusparse_csr_ms},
                           {"our_csr_default_ms", peers.our_csr_ms},
                           {"speedup_vs_cusparse_bsr", peer_ms / tc_ms},
                           {"speedup_vs_cusparse_blocked_ell", bell_ms / tc_ms},
                           {"speedup_vs_cusparse_csr", peers.cusparse_csr_ms / tc_ms},
                           {"speedup_bf16_vs_f32", tc_ms / tc16_ms},
                           {"tflops_f32_block_dense", flops / (tc_ms * 1e-3) * 1e-12},
                           {"sweep_ms", sweep}});
      std::printf("| %s | %lld | %.2f | %lld | %.3f | `%s` %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.2fx | %.2fx | %.2fx | %.2fx |\n",
                  bc.name.c_str(), (long long)bc.block, fill, (long long)F, tc_ms, best_schedule.c_str(),
                  best_ms, tc16_ms, peer_ms, bell_ms,
                  peers.cusparse_csr_ms, peers.our_csr_ms, peer_ms / tc_ms, bell_ms / tc_ms,
                  peers.cusparse_csr_ms / tc_ms,
                  tc_ms / tc16_ms);
      std::fflush(stdout);
    }
  }

  // ---- Hybrid ----
  std::vector<Matrix> graphs = suite(data_dir, true);
  std::vector<Matrix> kept;
  for (Matrix& m : graphs) {
    if (m.name != "bcsstk33") kept.push_back(std::move(m));
  }
  kept.push_back({"arxiv-like", rmat(17, 7.0, false, 11), true});
  std::printf("\n| matrix | F | hyb(1,5) two-pass ms | hyb(1,5) atomic ms | hyb(4,5) two-pass ms | hyb(4,5) atomic ms | our CSR ms | cuSPARSE CSR ms | best hyb/our CSR | best hyb/cuSPARSE | hyb(1,5) bf16 ms |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const Matrix& m : kept) {
    const Csr<float, int32_t> da = m.csr.to(MemorySpace::device);
    const AnySparse<float, int32_t> h1 = csr_to_hybrid(m.csr, HybParams{1, 5}).to(MemorySpace::device);
    const AnySparse<float, int32_t> h4 = csr_to_hybrid(m.csr, HybParams{4, 5}).to(MemorySpace::device);
    const AnySparse<bf16, int32_t> h1_16 =
        csr_to_hybrid(cast_values<bf16>(m.csr), HybParams{1, 5}).to(MemorySpace::device);
    for (int64_t F : features) {
      const DenseMatrix<float> db = uniform_dense<float>(m.csr.cols, F, 7).to(MemorySpace::device);
      DenseMatrix<float> dc(m.csr.rows, F, MemorySpace::device);
      const Peers peers = csr_peers(da, db, dc);
      double ms[2][2];
      for (int h = 0; h < 2; ++h) {
        for (int atomic = 0; atomic < 2; ++atomic) {
          ops::SpmmOptions o;
          o.validate = false;
          schedule::Problem problem = schedule::describe(schedule::Op::spmm, std::get<Hybrid<float, int32_t>>(h ? h4 : h1), F, F, F);
          schedule::Schedule s = schedule::default_schedule(problem);
          s.knobs.back().second = atomic;
          o.schedule = s;
          ms[h][atomic] = timed(m.name + " F=" + std::to_string(F) + " " + s.to_string(), peers.want, 1e-4, dc,
                                [&] { ops::spmm(ctx, h ? h4 : h1, db.view(), dc.view(), o); });
        }
      }
      // hyb(1, 5) two-pass again with bf16 A and B (f32 accumulation and output).
      const DenseMatrix<bf16> db16 = uniform_dense<bf16>(m.csr.cols, F, 7).to(MemorySpace::device);
      schedule::Schedule s16 = schedule::default_schedule(
          schedule::describe(schedule::Op::spmm, std::get<Hybrid<bf16, int32_t>>(h1_16), F, F, F));
      s16.knobs.back().second = 0;
      ops::SpmmOptions o16;
      o16.validate = false;
      o16.schedule = s16;
      const double hyb16_ms = timed(m.name + " F=" + std::to_string(F) + " bf16 " + s16.to_string(), peers.want,
                                    2e-2, dc, [&] { ops::spmm(ctx, h1_16, db16.view(), dc.view(), o16); });
      hyb_bf16_vs_f32.push_back(ms[0][0] / hyb16_ms);
      const double best = std::min(std::min(ms[0][0], ms[0][1]), std::min(ms[1][0], ms[1][1]));
      hyb_vs_csr.push_back(peers.our_csr_ms / ms[0][0]);
      hyb_vs_cusparse.push_back(peers.cusparse_csr_ms / ms[0][0]);
      hyb_cases.push_back({{"matrix", m.name}, {"rows", m.csr.rows}, {"nnz", m.csr.nnz()}, {"F", F},
                           {"hyb_1_5_two_pass_ms", ms[0][0]}, {"hyb_1_5_atomic_ms", ms[0][1]},
                           {"hyb_4_5_two_pass_ms", ms[1][0]}, {"hyb_4_5_atomic_ms", ms[1][1]},
                           {"hyb_1_5_two_pass_bf16_ms", hyb16_ms},
                           {"speedup_hyb_1_5_two_pass_bf16_vs_f32", ms[0][0] / hyb16_ms},
                           {"our_csr_default_ms", peers.our_csr_ms},
                           {"cusparse_csr_best_ms", peers.cusparse_csr_ms},
                           {"speedup_hyb_1_5_two_pass_vs_our_csr", peers.our_csr_ms / ms[0][0]},
                           {"speedup_hyb_1_5_two_pass_vs_cusparse_csr", peers.cusparse_csr_ms / ms[0][0]}});
      std::printf("| %s | %lld | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.2fx | %.2fx | %.3f |\n",
                  m.name.c_str(), (long long)F, ms[0][0], ms[0][1], ms[1][0], ms[1][1], peers.our_csr_ms,
                  peers.cusparse_csr_ms, peers.our_csr_ms / best, peers.cusparse_csr_ms / best, hyb16_ms);
      std::fflush(stdout);
    }
  }

  const auto [g_bsr, min_bsr] = geomean_and_min(vs_bsr_peer);
  const auto [g_bell, min_bell] = geomean_and_min(vs_bell_peer);
  const auto [g_block, min_block] = geomean_and_min(vs_block_peer);
  const auto [g_csr, min_csr] = geomean_and_min(vs_csr_peer);
  const auto [g_16, min_16] = geomean_and_min(bf16_vs_f32);
  const auto [g_hyb, min_hyb] = geomean_and_min(hyb_vs_csr);
  const auto [g_hyb_cu, min_hyb_cu] = geomean_and_min(hyb_vs_cusparse);
  const auto [g_hyb_16, min_hyb_16] = geomean_and_min(hyb_bf16_vs_f32);
  json doc;
  doc["summary"] = {{"device", device_name}, {"commit", git_commit()}, {"date", utc_now()},
                    {"bsr_geomean_speedup_vs_cusparse_bsr", g_bsr}, {"bsr_min_speedup_vs_cusparse_bsr", min_bsr},
                    {"bsr_geomean_speedup_vs_cusparse_blocked_ell", g_bell},
                    {"bsr_min_speedup_vs_cusparse_blocked_ell", min_bell},
                    {"bsr_geomean_speedup_vs_cusparse_best_block_format", g_block},
                    {"bsr_min_speedup_vs_cusparse_best_block_format", min_block},
                    {"bsr_geomean_speedup_vs_cusparse_csr", g_csr}, {"bsr_min_speedup_vs_cusparse_csr", min_csr},
                    {"bsr_geomean_bf16_vs_f32", g_16}, {"bsr_min_bf16_vs_f32", min_16},
                    {"bsr_cases", vs_bsr_peer.size()},
                    {"hyb_geomean_two_pass_vs_our_csr", g_hyb}, {"hyb_min_two_pass_vs_our_csr", min_hyb},
                    {"hyb_geomean_two_pass_vs_cusparse_csr", g_hyb_cu},
                    {"hyb_min_two_pass_vs_cusparse_csr", min_hyb_cu}, {"hyb_cases", hyb_vs_csr.size()},
                    {"hyb_geomean_bf16_vs_f32", g_hyb_16}, {"hyb_min_bf16_vs_f32", min_hyb_16},
                    {"timing", "CUDA events, L2 flushed, median"}};
  doc["bsr"] = bsr_cases;
  doc["hybrid"] = hyb_cases;
  std::ofstream(dir / "spmm_formats.json") << doc.dump(2) << "\n";
  std::printf("\nBSR tensor cores vs cuSPARSE BSR: geomean %.2fx (min %.2fx); vs cuSPARSE Blocked-ELL %.2fx "
              "(min %.2fx); vs the faster of the two %.2fx (min %.2fx); vs cuSPARSE CSR %.2fx (min %.2fx); "
              "bf16 vs f32 %.2fx\nhyb(1,5) two-pass vs our CSR: %.2fx (min %.2fx); vs cuSPARSE CSR %.2fx; "
              "bf16 vs f32 %.2fx (min %.2fx)\n",
              g_bsr, min_bsr, g_bell, min_bell, g_block, min_block, g_csr, min_csr, g_16, g_hyb, min_hyb,
              g_hyb_cu, g_hyb_16, min_hyb_16);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "spmm_formats_gpu: error: %s\n", e.what());
  return 1;
}
