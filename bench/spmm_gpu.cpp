// GPU SpMM benchmark: our default schedule, our best schedule from a sweep of the schedule space,
// and cuSPARSE's best CSR algorithm (descriptors, workspace and preprocessing made once, so the
// peer runs at its best), side by side on one device in one run (DESIGN.md, "How performance is
// measured"). On the GNN-sized graphs bf16 A and B are also timed against our f32. CUDA-event
// timing after warm-up, median of --reps runs, L2 flushed before every run. Writes
// <out>/<device>/spmm.json with a top-level `summary` and prints a table.
//   spmm_gpu [--quick] [--only NAME,...] [--out DIR] [--data DIR] [--features 32,64,...] [--reps N]
//            [--schedules "S1;S2;..."]   (sweep just these schedules: a quick look at a few knobs;
//                                          the file then ends in -listed.json)
// With --only the file is named spmm-<first name>.json so that split runs do not overwrite
// each other; scripts/merge_bench.py joins them into spmm.json.
#include <algorithm>
#include <CLI/CLI.hpp>
#include <fstream>
#include <nlohmann/json.hpp>

#include "bench/gpu_harness.h"
#include "core/device.h"
#include "core/timer.h"
#include "ops/cusparse_plan.h"
#include "ops/device_schedule.h"
#include "ops/spmm/spmm.h"
#include "schedule/schedule.h"

using namespace tessera;
using namespace tessera::bench;
using json = nlohmann::ordered_json;

namespace {

// The schedules the sweep tries: every merge-path schedule, and row-split sub-warps of 4..32
// threads in blocks of 128..512 threads.
bool in_default_sweep(const schedule::Schedule& s) {
  if (s.variant == "csr.merge_path") return true;
  if (s.variant != "csr.row_split" || s.knob("tpr") < 4) return false;
  const int64_t threads = s.knob("tpr") * s.knob("rpb");
  return threads >= 128 && threads <= 512;
}

// The default schedule (the op called without one, as a user would), then the sweep's winner, for
// one problem; `run` runs a schedule (nullopt: the default), `check` throws when the output is
// wrong. def names the schedule the default heuristic picked.
struct Tuned {
  schedule::Schedule def, best;
  double default_ms = 0, best_ms = 0;
  std::vector<std::pair<std::string, double>> sweep;  // every schedule tried, with its time
};
using Runner = std::function<void(const std::optional<schedule::Schedule>&)>;
// `listed`, when not empty, replaces the default sweep (those of them that can run the problem).
Tuned tune(Timer& timer, const schedule::Problem& problem, const schedule::Schedule& def, int reps,
           int sweep_reps, const std::vector<schedule::Schedule>& listed, const Runner& run,
           const std::function<void(const schedule::Schedule&)>& check) {
  Tuned t;
  t.def = def;
  run(std::nullopt);
  check(t.def);
  t.default_ms = timer.median_ms([&] { run(std::nullopt); }, reps);
  t.best = t.def;
  double best_sweep = INFINITY;
  std::vector<schedule::Schedule> candidates;
  for (const schedule::Schedule& s : listed) {
    const schedule::Verdict verdict = schedule::can_implement(s, problem);
    if (verdict.ok) {
      candidates.push_back(s);
    } else {
      std::fprintf(stderr, "note: %s skipped here: %s\n", s.to_string().c_str(), verdict.reason.c_str());
    }
  }
  if (listed.empty()) {
    for (const schedule::Schedule& s : schedule::space(problem)) {
      if (in_default_sweep(s)) candidates.push_back(s);
    }
  }
  // The default is always among the candidates (a listed set, or the full sweep's filter, may
  // leave it out), so the best swept is chosen against it too; the best is then timed again at
  // --reps, apart.
  if (std::find(candidates.begin(), candidates.end(), t.def) == candidates.end()) {
    candidates.insert(candidates.begin(), t.def);
  }
  for (const schedule::Schedule& s : candidates) {
    const double ms = timer.median_ms([&] { run(s); }, sweep_reps, 1);
    t.sweep.emplace_back(s.to_string(), ms);
    if (ms < best_sweep) best_sweep = ms, t.best = s;
  }
  run(t.best);
  check(t.best);
  t.best_ms = timer.median_ms([&] { run(t.best); }, reps);
  return t;
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{"GPU SpMM benchmark: Tessera schedules vs cuSPARSE"};
  bool quick = false;
  std::string out_dir = "bench/results", data_dir = TESSERA_SHARED_DATA;
  std::vector<int64_t> features{32, 64, 128, 256};
  int reps = 20, sweep_reps = 3;
  std::vector<std::string> only, schedule_texts;
  app.add_flag("--quick", quick, "small graphs only (a smoke run)");
  app.add_option("--only", only, "run just these matrices (names as in the table)")->delimiter(',');
  app.add_option("--out", out_dir, "results folder; the file goes to <out>/<device>/spmm.json");
  app.add_option("--data", data_dir, "shared data folder (SuiteSparse .mtx under mtx/)");
  app.add_option("--features", features, "feature widths F")->delimiter(',');
  app.add_option("--reps", reps, "timed repetitions per variant (median reported)");
  app.add_option("--sweep-reps", sweep_reps, "repetitions per schedule in the sweep");
  app.add_option("--schedules", schedule_texts, "sweep just these schedules (';'-separated)")->delimiter(';');
  if (const int code = bench::parse_command_line(app, argc, argv); code >= 0) return code;
  TSR_CHECK(device::available(), "spmm_gpu needs a CUDA device");
  std::vector<schedule::Schedule> listed;
  for (const std::string& text : schedule_texts) listed.push_back(schedule::parse(schedule::Op::spmm, text));

  const std::vector<Matrix> matrices = suite(data_dir, quick, only);
  Context ctx;
  Timer timer(ctx);
  const double copy_gbps = timer.copy_gbps(size_t(1) << 30);
  const std::string device_name = device::name(ctx.device());
  json cases = json::array();
  std::vector<double> speedups, best_speedups, bf16_speedups;
  const std::filesystem::path dir = std::filesystem::path(out_dir) / device::tag(ctx.device());
  std::filesystem::create_directories(dir);
  // A listed sweep never overwrites the file of a full run.
  const std::string file = std::string(only.empty() ? "spmm" : "spmm-" + only.front()) +
                           (listed.empty() ? "" : "-listed") + ".json";
  // Rewritten after every case, so a run cut short still leaves what it measured.
  auto write_results = [&](bool complete) {
    const auto [geomean, lowest] = geomean_and_min(speedups);
    const auto [best_geomean, best_lowest] = geomean_and_min(best_speedups);
    const auto [bf16_geomean, bf16_lowest] = geomean_and_min(bf16_speedups);
    json doc;
    doc["summary"] = {{"device", device_name}, {"commit", git_commit()}, {"date", utc_now()},
                      {"geomean_speedup_vs_cusparse", geomean}, {"min_speedup_vs_cusparse", lowest},
                      {"cases", speedups.size()},
                      {"geomean_best_schedule_speedup_vs_cusparse", best_geomean},
                      {"min_best_schedule_speedup_vs_cusparse", best_lowest},
                      {"geomean_bf16_speedup_vs_our_f32", bf16_geomean},
                      {"min_bf16_speedup_vs_our_f32", bf16_lowest}, {"bf16_cases", bf16_speedups.size()},
                      {"complete", complete}, {"copy_gbps", copy_gbps},
                      {"timing", "CUDA events, L2 flushed, median"}, {"quick", quick},
                      {"sweep", listed.empty() ? "default" : "listed"}};
    doc["cases"] = cases;
    std::ofstream(dir / file) << doc.dump(2) << "\n";
    return std::pair(geomean, lowest);
  };
  std::printf("| matrix | nnz | F | default | ms | best schedule | ms | cuSPARSE | ms | default/cuSPARSE | best/cuSPARSE | %% of no-reuse floor | bf16 default ms | bf16 vs f32 |\n");
  std::printf("|---|---:|---:|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|\n");
  for (const Matrix& m : matrices) {
    const Csr<float, int32_t> da = m.csr.to(MemorySpace::device);
    const Csr<bf16, int32_t> da16 = m.large ? cast_values<bf16>(m.csr).to(MemorySpace::device) : Csr<bf16, int32_t>{};
    for (int64_t F : features) {
      const DenseMatrix<float> db = uniform_dense<float>(m.csr.cols, F, 7).to(MemorySpace::device);
      DenseMatrix<float> dc(m.csr.rows, F, MemorySpace::device);
      auto result = [&] {
        ctx.synchronize();
        return dc.buffer().to_vector();
      };
      // cuSPARSE, best algorithm; its output is the check for ours.
      double cusparse_ms = INFINITY;
      std::string cusparse_best;
      std::vector<float> want;
      for (int alg : {1, 2, 3}) {
        ops::CusparsePlan plan = ops::CusparsePlan::spmm(ctx, da.view(), db.view(), dc.view(), 1.0f, 0.0f, alg);
        const double ms = timer.median_ms([&] { plan.run(); }, reps);
        if (ms < cusparse_ms) cusparse_ms = ms, cusparse_best = "alg=" + std::to_string(alg);
        if (want.empty()) want = result();
      }
      const auto checker = [&](double tolerance) {
        return [&, tolerance](const schedule::Schedule& s) {
          const double err = relative_error(result(), want);
          TSR_CHECK(err < tolerance, m.name, " F=", F, ": ", s.to_string(), " differs from cuSPARSE by ", err);
        };
      };
      const schedule::Problem problem = schedule::describe(schedule::Op::spmm, da.view(), F, F, F);
      const auto default_of = [&](const auto& view) {
        return ops::detail::choose_schedule(ctx, schedule::Op::spmm, view, F, F, F, std::nullopt);
      };
      const Tuned f32 = tune(timer, problem, default_of(da.view()), reps, sweep_reps, listed,
                             [&](const std::optional<schedule::Schedule>& s) {
        ops::SpmmOptions o;
        o.validate = false;
        o.schedule = s;
        ops::spmm(ctx, da.view(), db.view(), dc.view(), o);
      }, checker(1e-4));
      // bf16 A and B (the f32 inputs rounded), f32 accumulation and output.
      Tuned b16;
      if (m.large) {
        const DenseMatrix<bf16> db16 = uniform_dense<bf16>(m.csr.cols, F, 7).to(MemorySpace::device);
        const schedule::Problem p16 = schedule::describe(schedule::Op::spmm, da16.view(), F, F, F);
        b16 = tune(timer, p16, default_of(da16.view()), reps, sweep_reps, listed,
                   [&](const std::optional<schedule::Schedule>& s) {
          ops::SpmmOptions o;
          o.validate = false;
          o.schedule = s;
          ops::spmm(ctx, da16.view(), db16.view(), dc.view(), o);
        }, checker(2e-2));
        bf16_speedups.push_back(f32.default_ms / b16.default_ms);
      }
      const double nnz = double(m.csr.nnz()), rows = double(m.csr.rows), cols = double(m.csr.cols);
      const double a_bytes = nnz * 8 + (rows + 1) * 4;
      const double reuse_bytes = a_bytes + cols * F * 4 + rows * F * 4;
      const double noreuse_bytes = a_bytes + nnz * F * 4 + rows * F * 4;
      const double floor_reuse_ms = reuse_bytes / (copy_gbps * 1e9) * 1e3;
      const double floor_noreuse_ms = noreuse_bytes / (copy_gbps * 1e9) * 1e3;
      const double speedup = cusparse_ms / f32.default_ms;
      speedups.push_back(speedup);
      best_speedups.push_back(cusparse_ms / f32.best_ms);
      json c = {{"matrix", m.name}, {"rows", m.csr.rows}, {"nnz", m.csr.nnz()}, {"F", F},
                {"dtype", "f32"}, {"default_schedule", f32.def.to_string()},
                {"default_ms", f32.default_ms}, {"best_schedule", f32.best.to_string()},
                {"best_ms", f32.best_ms}, {"cusparse_best", cusparse_best},
                {"cusparse_ms", cusparse_ms}, {"speedup_default_vs_cusparse", speedup},
                {"speedup_best_vs_cusparse", cusparse_ms / f32.best_ms},
                {"gflops_default", 2 * nnz * F / (f32.default_ms * 1e-3) * 1e-9},
                {"gflops_best", 2 * nnz * F / (f32.best_ms * 1e-3) * 1e-9},
                {"floor_perfect_reuse_ms", floor_reuse_ms},
                {"floor_no_reuse_ms", floor_noreuse_ms},
                {"default_fraction_of_reuse_floor", floor_reuse_ms / f32.default_ms},
                {"default_fraction_of_no_reuse_floor", floor_noreuse_ms / f32.default_ms}};
      if (m.large) {
        c["bf16"] = {{"default_schedule", b16.def.to_string()}, {"default_ms", b16.default_ms},
                     {"best_schedule", b16.best.to_string()}, {"best_ms", b16.best_ms},
                     {"speedup_default_vs_our_f32_default", f32.default_ms / b16.default_ms},
                     {"speedup_best_vs_our_f32_best", f32.best_ms / b16.best_ms},
                     {"sweep_ms", sweep_json(b16.sweep)}};
      }
      c["sweep_ms"] = sweep_json(f32.sweep);
      cases.push_back(c);
      std::printf("| %s | %lld | %lld | `%s` | %.3f | `%s` | %.3f | `%s` | %.3f | %.2fx | %.2fx | %.0f%% | %s | %s |\n",
                  m.name.c_str(), (long long)m.csr.nnz(), (long long)F, f32.def.to_string().c_str(),
                  f32.default_ms, f32.best.to_string().c_str(), f32.best_ms, cusparse_best.c_str(),
                  cusparse_ms, speedup, cusparse_ms / f32.best_ms, 100 * floor_noreuse_ms / f32.default_ms,
                  m.large ? std::to_string(b16.default_ms).c_str() : "-",
                  m.large ? (std::to_string(f32.default_ms / b16.default_ms) + "x").c_str() : "-");
      std::fflush(stdout);
      write_results(false);
    }
  }
  const auto [geomean, min_speedup] = write_results(true);
  std::printf("\ngeomean default/cuSPARSE %.3fx, min %.3fx over %zu cases; copy %.0f GB/s; wrote %s\n",
              geomean, min_speedup, speedups.size(), copy_gbps, (dir / file).c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "spmm_gpu: error: %s\n", e.what());
  return 1;
}
