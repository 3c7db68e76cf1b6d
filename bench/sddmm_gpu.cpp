// GPU SDDMM benchmark: our default schedule, our best schedule from a sweep of the schedule space,
// and cuSPARSE's cusparseSDDMM (descriptors, workspace and preprocessing made once), side by side
// on one device in one run (DESIGN.md, "How performance is measured"). CUDA-event timing after
// warm-up, median of --reps runs, L2 flushed before every run. out[e] = <X[row(e)], Y[col(e)]>
// in f32. On the generated graphs X, Y and A's values are also timed in bf16 (f32 accumulation and
// output; the default schedule) against our f32 default and cuSPARSE, which has no bf16 SDDMM
// (its f32 is what a user of bf16 features would call instead). Writes
// <out>/<device>/sddmm.json (sddmm-<name>.json with --only) with a top-level `summary` and prints
// a table.
//   sddmm_gpu [--quick] [--only NAME,...] [--out DIR] [--data DIR] [--features 32,64,...] [--reps N]
//             [--schedules "S1;S2;..."]   (sweep just these schedules, those that can run a case,
//                                          instead of the whole space; the file then ends in
//                                          -listed.json)
//             [--cusparse-layouts]         (also time cusparseSDDMM with Y described the two other
//                                          ways: row-major with opB = transpose, and Y^T stored
//                                          row-major; each case gets cusparse_layouts_ms)
#include <algorithm>
#include <CLI/CLI.hpp>
#include <fstream>
#include <nlohmann/json.hpp>

#include "bench/gpu_harness.h"
#include "core/device.h"
#include "ops/cusparse_plan.h"
#include "ops/device_schedule.h"
#include "ops/sddmm/sddmm.h"
#include "schedule/schedule.h"

using namespace tessera;
using namespace tessera::bench;
using json = nlohmann::ordered_json;

int main(int argc, char** argv) try {
  CLI::App app{"GPU SDDMM benchmark: Tessera schedules vs cuSPARSE"};
  bool quick = false;
  std::string out_dir = "bench/results", data_dir = TESSERA_SHARED_DATA;
  std::vector<int64_t> features{32, 64, 128, 256};
  std::vector<std::string> only;
  int reps = 20, sweep_reps = 3;
  std::vector<std::string> schedule_texts;
  bool cusparse_layouts = false;
  app.add_flag("--quick", quick, "small graphs only (a smoke run)");
  app.add_flag("--cusparse-layouts", cusparse_layouts,
               "also time cuSPARSE's SDDMM with Y row-major under opB = transpose and with Y^T row-major");
  app.add_option("--only", only, "run just these matrices (names as in the table)")->delimiter(',');
  app.add_option("--out", out_dir, "results folder; the file goes to <out>/<device>/sddmm.json");
  app.add_option("--data", data_dir, "shared data folder (SuiteSparse .mtx under mtx/, cora/)");
  app.add_option("--features", features, "feature widths F")->delimiter(',');
  app.add_option("--reps", reps, "timed repetitions per variant (median reported)");
  app.add_option("--sweep-reps", sweep_reps, "repetitions per schedule in the sweep");
  app.add_option("--schedules", schedule_texts, "sweep just these schedules (';'-separated)")->delimiter(';');
  if (const int code = bench::parse_command_line(app, argc, argv); code >= 0) return code;
  std::vector<schedule::Schedule> listed;
  for (const std::string& text : schedule_texts) listed.push_back(schedule::parse(schedule::Op::sddmm, text));
  TSR_CHECK(device::available(), "sddmm_gpu needs a CUDA device");

  const std::vector<Matrix> matrices = suite(data_dir, quick, only);
  Context ctx;
  Timer timer(ctx);
  const double copy_gbps = timer.copy_gbps(size_t(1) << 30);
  const std::string device_name = device::name(ctx.device());
  json cases = json::array();
  std::vector<double> speedups, best_speedups, per_call_speedups, bf16_speedups, bf16_vs_cusparse;
  const std::filesystem::path dir = std::filesystem::path(out_dir) / device::tag(ctx.device());
  std::filesystem::create_directories(dir);
  // A listed sweep never overwrites the file of a full run.
  const std::string file = std::string(only.empty() ? "sddmm" : "sddmm-" + only.front()) +
                           (listed.empty() ? "" : "-listed") + ".json";
  auto write_results = [&](bool complete) {
    const auto [geomean, lowest] = geomean_and_min(speedups);
    const auto [best_geomean, best_lowest] = geomean_and_min(best_speedups);
    const auto [per_call_geomean, per_call_lowest] = geomean_and_min(per_call_speedups);
    const auto [bf16_geomean, bf16_lowest] = geomean_and_min(bf16_speedups);
    const auto [bf16_cusparse_geomean, bf16_cusparse_lowest] = geomean_and_min(bf16_vs_cusparse);
    json doc;
    doc["summary"] = {{"device", device_name}, {"commit", git_commit()}, {"date", utc_now()},
                      {"geomean_speedup_vs_cusparse", geomean}, {"min_speedup_vs_cusparse", lowest},
                      {"cases", speedups.size()},
                      {"geomean_best_schedule_speedup_vs_cusparse", best_geomean},
                      {"min_best_schedule_speedup_vs_cusparse", best_lowest},
                      {"geomean_speedup_vs_cusparse_without_preprocessing", per_call_geomean},
                      {"min_speedup_vs_cusparse_without_preprocessing", per_call_lowest},
                      {"geomean_bf16_speedup_vs_our_f32", bf16_geomean},
                      {"min_bf16_speedup_vs_our_f32", bf16_lowest},
                      {"geomean_bf16_speedup_vs_cusparse_f32", bf16_cusparse_geomean},
                      {"min_bf16_speedup_vs_cusparse_f32", bf16_cusparse_lowest},
                      {"bf16_cases", bf16_speedups.size()},
                      {"complete", complete}, {"copy_gbps", copy_gbps},
                      {"timing", "CUDA events, L2 flushed, median"}, {"quick", quick},
                      {"sweep", listed.empty() ? "default" : "listed"}};
    doc["cases"] = cases;
    std::ofstream(dir / file) << doc.dump(2) << "\n";
    return std::pair(geomean, lowest);
  };
  std::printf("| matrix | nnz | F | default | ms | best schedule | ms | cuSPARSE ms | cuSPARSE no-preprocess ms | default/cuSPARSE | best/cuSPARSE | default/no-preprocess | %% of no-reuse floor | bf16 default ms | bf16 vs f32 |\n");
  std::printf("|---|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const Matrix& m : matrices) {
    const Csr<float, int32_t> da = m.csr.to(MemorySpace::device);
    const Csr<bf16, int32_t> da16 = m.large ? cast_values<bf16>(m.csr).to(MemorySpace::device) : Csr<bf16, int32_t>{};
    for (int64_t F : features) {
      const DenseMatrix<float> dx = uniform_dense<float>(m.csr.rows, F, 8).to(MemorySpace::device);
      const DenseMatrix<float> dy = uniform_dense<float>(m.csr.cols, F, 9).to(MemorySpace::device);
      Buffer<float> out(size_t(m.csr.nnz()), MemorySpace::device);
      auto result = [&] {
        ctx.synchronize();
        return out.to_vector();
      };
      ops::CusparsePlan plan = ops::CusparsePlan::sddmm(ctx, da.view(), dx.view(), dy.view(), out.data());
      const double cusparse_ms = timer.median_ms([&] { plan.run(); }, reps);
      const std::vector<float> want = result();
      // cuSPARSE as a framework calls it: descriptors and workspace query on every call, no
      // preprocessing (what ops::sddmm's csr.cusparse schedule does).
      const double per_call_ms = timer.median_ms([&] {
        ops::CusparsePlan::sddmm(ctx, da.view(), dx.view(), dy.view(), out.data(), false).run();
      }, reps);
      // The other two ways to hand cuSPARSE the [F, cols] factor (the default above, Y read as
      // a column-major Y^T, is what the table compares against), each checked against it.
      json layouts_ms;
      if (cusparse_layouts) {
        layouts_ms["y_as_col_major"] = cusparse_ms;
        const DenseMatrix<float> y_host = dy.to(MemorySpace::host);  // the Y cuSPARSE just read
        DenseMatrix<float> yt_host(F, m.csr.cols);
        for (int64_t r = 0; r < m.csr.cols; ++r) {
          for (int64_t f = 0; f < F; ++f) yt_host.data()[f * m.csr.cols + r] = y_host.data()[r * F + f];
        }
        const DenseMatrix<float> dyt = yt_host.to(MemorySpace::device);
        using Layout = ops::CusparsePlan::SddmmLayout;
        for (const auto& [name, layout] : {std::pair{"y_transposed", Layout::y_transposed},
                                          std::pair{"yt_row_major", Layout::yt_row_major}}) {
          ops::CusparsePlan other = ops::CusparsePlan::sddmm(
              ctx, da.view(), dx.view(), layout == Layout::yt_row_major ? dyt.view() : dy.view(), out.data(),
              true, layout);
          const double ms = timer.median_ms([&] { other.run(); }, std::min(reps, 5));
          const double err = relative_error(result(), want);
          TSR_CHECK(err < 1e-4, m.name, " F=", F, ": cuSPARSE with layout ", name, " differs by ", err);
          layouts_ms[name] = ms;
        }
        std::printf("cuSPARSE layouts %s F=%lld: %s\n", m.name.c_str(), (long long)F, layouts_ms.dump().c_str());
      }
      auto run = [&](const std::optional<schedule::Schedule>& s) {  // nullopt: the default
        ops::SddmmOptions o;
        o.validate = false;
        o.schedule = s;
        ops::sddmm(ctx, da.view(), dx.view(), dy.view(), out.data(), o);
      };
      auto check = [&](const schedule::Schedule& s, double tolerance = 1e-4) {
        const double err = relative_error(result(), want);
        TSR_CHECK(err < tolerance, m.name, " F=", F, ": ", s.to_string(), " differs from cuSPARSE by ", err);
      };
      const schedule::Problem problem = schedule::describe(schedule::Op::sddmm, da.view(), F, F, F);
      const schedule::Schedule def =
          ops::detail::choose_schedule(ctx, schedule::Op::sddmm, da.view(), F, F, F, std::nullopt);
      run(std::nullopt);
      check(def);
      const double default_ms = timer.median_ms([&] { run(std::nullopt); }, reps);
      schedule::Schedule best = def;
      double best_sweep = INFINITY;
      std::vector<std::pair<std::string, double>> sweep;
      std::vector<schedule::Schedule> candidates;
      for (const schedule::Schedule& s : listed) {
        if (schedule::can_implement(s, problem)) candidates.push_back(s);
      }
      if (listed.empty()) candidates = schedule::space(problem);
      // The default is always among the candidates (a listed set may leave it out), so the best
      // swept is chosen against it too; the best is then timed again at --reps, apart.
      if (std::find(candidates.begin(), candidates.end(), def) == candidates.end()) {
        candidates.insert(candidates.begin(), def);
      }
      for (const schedule::Schedule& s : candidates) {
        if (s.variant == "csr.cusparse") continue;
        const double ms = timer.median_ms([&] { run(s); }, sweep_reps, 1);
        sweep.emplace_back(s.to_string(), ms);
        if (ms < best_sweep) best_sweep = ms, best = s;
      }
      run(best);
      check(best);
      const double best_ms = timer.median_ms([&] { run(best); }, reps);
      // bf16 X and Y (the f32 inputs rounded), the default schedule; checked against cuSPARSE's
      // f32 result.
      json b16;
      if (m.large) {
        const DenseMatrix<bf16> dx16 = uniform_dense<bf16>(m.csr.rows, F, 8).to(MemorySpace::device);
        const DenseMatrix<bf16> dy16 = uniform_dense<bf16>(m.csr.cols, F, 9).to(MemorySpace::device);
        const auto run16 = [&](const std::optional<schedule::Schedule>& s = std::nullopt) {
          ops::SddmmOptions o;
          o.validate = false;
          o.schedule = s;
          ops::sddmm(ctx, da16.view(), dx16.view(), dy16.view(), out.data(), o);
        };
        const schedule::Schedule def16 =
            ops::detail::choose_schedule(ctx, schedule::Op::sddmm, da16.view(), F, F, F, std::nullopt);
        run16();
        check(def16, 2e-2);
        const double ms16 = timer.median_ms([&] { run16(); }, reps);
        // Listed schedules (--schedules) are swept in bf16 too; the full space is not.
        std::vector<std::pair<std::string, double>> sweep16;
        const schedule::Problem p16 = schedule::describe(schedule::Op::sddmm, da16.view(), F, F, F);
        for (const schedule::Schedule& s : listed) {
          if (s.variant == "csr.cusparse" || !schedule::can_implement(s, p16)) continue;
          sweep16.emplace_back(s.to_string(), timer.median_ms([&] { run16(s); }, sweep_reps, 1));
        }
        bf16_speedups.push_back(default_ms / ms16);
        bf16_vs_cusparse.push_back(cusparse_ms / ms16);
        b16 = {{"default_schedule", def16.to_string()}, {"default_ms", ms16},
               {"speedup_default_vs_our_f32_default", default_ms / ms16},
               {"speedup_default_vs_cusparse_f32", cusparse_ms / ms16}};
        if (!sweep16.empty()) b16["sweep_ms"] = sweep_json(sweep16);
      }
      // Bytes: A's indices and offsets, the output, X read once; Y once (perfect reuse) or once
      // per nonzero (no reuse).
      const double nnz = double(m.csr.nnz()), rows = double(m.csr.rows), cols = double(m.csr.cols);
      const double fixed = nnz * 4 + (rows + 1) * 4 + nnz * 4 + rows * F * 4;
      const double floor_reuse_ms = (fixed + cols * F * 4) / (copy_gbps * 1e9) * 1e3;
      const double floor_noreuse_ms = (fixed + nnz * F * 4) / (copy_gbps * 1e9) * 1e3;
      const double speedup = cusparse_ms / default_ms;
      speedups.push_back(speedup);
      best_speedups.push_back(cusparse_ms / best_ms);
      per_call_speedups.push_back(per_call_ms / default_ms);
      cases.push_back({{"matrix", m.name}, {"rows", m.csr.rows}, {"nnz", m.csr.nnz()}, {"F", F},
                       {"dtype", "f32"}, {"default_schedule", def.to_string()},
                       {"default_ms", default_ms}, {"best_schedule", best.to_string()},
                       {"best_ms", best_ms}, {"cusparse_ms", cusparse_ms},
                       {"cusparse_without_preprocessing_ms", per_call_ms},
                       {"speedup_default_vs_cusparse_without_preprocessing", per_call_ms / default_ms},
                       {"speedup_default_vs_cusparse", speedup},
                       {"speedup_best_vs_cusparse", cusparse_ms / best_ms},
                       {"gflops_default", 2 * nnz * F / (default_ms * 1e-3) * 1e-9},
                       {"floor_perfect_reuse_ms", floor_reuse_ms},
                       {"floor_no_reuse_ms", floor_noreuse_ms},
                       {"default_fraction_of_reuse_floor", floor_reuse_ms / default_ms},
                       {"default_fraction_of_no_reuse_floor", floor_noreuse_ms / default_ms},
                       {"sweep_ms", sweep_json(sweep)}});
      if (cusparse_layouts) cases.back()["cusparse_layouts_ms"] = layouts_ms;
      char bf16_ms_text[32] = "-", bf16_ratio_text[32] = "-";
      if (m.large) {
        cases.back()["bf16"] = b16;
        std::snprintf(bf16_ms_text, sizeof bf16_ms_text, "%.3f", b16["default_ms"].get<double>());
        std::snprintf(bf16_ratio_text, sizeof bf16_ratio_text, "%.2fx",
                      b16["speedup_default_vs_our_f32_default"].get<double>());
      }
      std::printf("| %s | %lld | %lld | `%s` | %.3f | `%s` | %.3f | %.3f | %.3f | %.2fx | %.2fx | %.2fx | %.0f%% | %s | %s |\n",
                  m.name.c_str(), (long long)m.csr.nnz(), (long long)F, def.to_string().c_str(),
                  default_ms, best.to_string().c_str(), best_ms, cusparse_ms, per_call_ms, speedup,
                  cusparse_ms / best_ms, per_call_ms / default_ms, 100 * floor_noreuse_ms / default_ms,
                  bf16_ms_text, bf16_ratio_text);
      std::fflush(stdout);
      write_results(false);
    }
  }
  const auto [geomean, min_speedup] = write_results(true);
  std::printf("\ngeomean default/cuSPARSE %.3fx, min %.3fx over %zu cases; copy %.0f GB/s; wrote %s\n",
              geomean, min_speedup, speedups.size(), copy_gbps, (dir / file).c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "sddmm_gpu: error: %s\n", e.what());
  return 1;
}
