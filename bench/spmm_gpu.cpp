// GPU SpMM benchmark: our default schedule, our best schedule from a sweep of the schedule space,
// and cuSPARSE's best CSR algorithm, side by side on one device in one run (DESIGN.md, "How
// performance is measured"). CUDA-event timing after warm-up, median of --reps runs, L2 flushed
// before every run. Writes <out>/spmm.json with a top-level `summary` and prints a table.
//   spmm_gpu [--quick] [--out DIR] [--data DIR] [--features 32,64,...] [--reps N]
#include <cuda_runtime_api.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/cuda_check.h"
#include "core/device.h"
#include "core/timer.h"
#include "formats/convert.h"
#include "formats/generators.h"
#include "formats/io.h"
#include "ops/spmm/spmm.h"
#include "schedule/schedule.h"

using namespace tessera;
using json = nlohmann::ordered_json;

namespace {

struct Matrix {
  std::string name;
  Csr<float, int32_t> csr;
};

Csr<float, int32_t> rmat(int scale, double edge_factor, bool locality, uint64_t seed) {
  RmatParams p;
  p.scale = scale;
  p.edge_factor = edge_factor;
  p.permute_vertices = !locality;  // R-MAT's recursion keeps neighbours close; permuting breaks it
  return generate_rmat<float, int32_t>(p, GenValues{seed, false});
}

// Times fn with CUDA events on ctx's stream: warm-up, then reps runs, each after an L2 flush.
class Timer {
 public:
  explicit Timer(Context& ctx) : stream_(static_cast<cudaStream_t>(ctx.stream())) {
    cudaDeviceProp prop{};
    TSR_CUDA_CHECK(cudaGetDeviceProperties(&prop, ctx.device()));
    flush_bytes_ = size_t(prop.l2CacheSize) * 2;
    flush_ = Buffer<uint8_t>(flush_bytes_, MemorySpace::device);
    TSR_CUDA_CHECK(cudaEventCreate(&start_));
    TSR_CUDA_CHECK(cudaEventCreate(&stop_));
  }
  ~Timer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  double median_ms(const std::function<void()>& fn, int reps, int warmup = 2) {
    for (int i = 0; i < warmup; ++i) fn();
    std::vector<double> ms;
    for (int i = 0; i < reps; ++i) {
      TSR_CUDA_CHECK(cudaMemsetAsync(flush_.data(), i & 0xff, flush_bytes_, stream_));
      TSR_CUDA_CHECK(cudaEventRecord(start_, stream_));
      fn();
      TSR_CUDA_CHECK(cudaEventRecord(stop_, stream_));
      TSR_CUDA_CHECK(cudaEventSynchronize(stop_));
      float t = 0;
      TSR_CUDA_CHECK(cudaEventElapsedTime(&t, start_, stop_));
      ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
  }
  /// Device copy bandwidth (bytes read + written per second) over a buffer of `bytes`.
  double copy_gbps(size_t bytes) {
    Buffer<uint8_t> src(bytes, MemorySpace::device), dst(bytes, MemorySpace::device);
    TSR_CUDA_CHECK(cudaMemsetAsync(src.data(), 1, bytes, stream_));
    const double ms = median_ms([&] {
      TSR_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), bytes, cudaMemcpyDeviceToDevice, stream_));
    }, 10);
    return 2.0 * double(bytes) / (ms * 1e-3) * 1e-9;
  }

 private:
  cudaStream_t stream_;
  size_t flush_bytes_ = 0;
  Buffer<uint8_t> flush_;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

double relative_error(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += double(got[i] - want[i]) * double(got[i] - want[i]);
    den += double(want[i]) * double(want[i]);
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

std::string git_commit() {
  const char* env = std::getenv("TESSERA_COMMIT");
  return env ? env : "unknown";
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{"GPU SpMM benchmark: Tessera schedules vs cuSPARSE"};
  bool quick = false;
  std::string out_dir = "bench/results", data_dir = TESSERA_SHARED_DATA;
  std::vector<int64_t> features{32, 64, 128, 256};
  int reps = 20, sweep_reps = 3;
  app.add_flag("--quick", quick, "small graphs only (a smoke run)");
  app.add_option("--out", out_dir, "results folder; the file goes to <out>/<device>/spmm.json");
  app.add_option("--data", data_dir, "shared data folder (SuiteSparse .mtx under mtx/)");
  app.add_option("--features", features, "feature widths F")->delimiter(',');
  app.add_option("--reps", reps, "timed repetitions per variant (median reported)");
  app.add_option("--sweep-reps", sweep_reps, "repetitions per schedule in the sweep");
  CLI11_PARSE(app, argc, argv);
  TSR_CHECK(device::available(), "spmm_gpu needs a CUDA device");

  // Matrices: the SuiteSparse files when present, then generated graphs shaped like the GNN
  // benchmarks, each with a locality-preserving variant (largest last).
  std::vector<Matrix> matrices;
  WallTimer gen;
  for (const char* name : {"bcsstk33", "fidapex6", "luxembourg", "ca-GrQc"}) {
    const std::filesystem::path path = std::filesystem::path(data_dir) / "mtx" / (std::string(name) + ".mtx");
    if (std::filesystem::exists(path)) {
      matrices.push_back({name, canonicalize(coo_to_csr(read_matrix_market<float, int32_t>(path.string())))});
    }
  }
  if (quick) {
    matrices.push_back({"rmat-s16", rmat(16, 16, false, 1)});
    matrices.push_back({"rmat-s16-local", rmat(16, 16, true, 1)});
  } else {
    matrices.push_back({"arxiv-like", rmat(17, 7, false, 1)});          // 131k nodes, 0.88M edges
    matrices.push_back({"arxiv-like-local", rmat(17, 7, true, 1)});
    matrices.push_back({"reddit-like", rmat(18, 420, false, 2)});      // 262k nodes, 76M edges
    matrices.push_back({"reddit-like-local", rmat(18, 420, true, 2)});
    matrices.push_back({"products-like", rmat(21, 58, false, 3)});     // 2.1M nodes, 112M edges
    matrices.push_back({"products-like-local", rmat(21, 58, true, 3)});
  }
  std::fprintf(stderr, "matrices ready in %.1f s\n", gen.seconds());

  Context ctx;
  Timer timer(ctx);
  const double copy_gbps = timer.copy_gbps(size_t(1) << 30);
  const std::string device_name = device::name(ctx.device());
  json cases = json::array();
  std::vector<double> speedups;
  const std::filesystem::path dir = std::filesystem::path(out_dir) / device::tag(ctx.device());
  std::filesystem::create_directories(dir);
  // Rewritten after every case, so a run cut short still leaves what it measured.
  auto write_results = [&](bool complete) {
    double log_sum = 0, min_speedup = INFINITY;
    for (double s : speedups) log_sum += std::log(s), min_speedup = std::min(min_speedup, s);
    json doc;
    doc["summary"] = {{"device", device_name}, {"commit", git_commit()}, {"date", utc_now()},
                      {"geomean_speedup_vs_cusparse", std::exp(log_sum / double(speedups.size()))},
                      {"min_speedup_vs_cusparse", min_speedup}, {"cases", speedups.size()},
                      {"complete", complete}, {"copy_gbps", copy_gbps},
                      {"timing", "CUDA events, L2 flushed, median"}, {"quick", quick}};
    doc["cases"] = cases;
    std::ofstream(dir / "spmm.json") << doc.dump(2) << "\n";
    return std::pair(std::exp(log_sum / double(speedups.size())), min_speedup);
  };
  std::printf("| matrix | nnz | F | default | ms | best schedule | ms | cuSPARSE | ms | default/cuSPARSE | best/cuSPARSE | %% of no-reuse floor |\n");
  std::printf("|---|---:|---:|---|---:|---|---:|---|---:|---:|---:|---:|\n");
  for (const Matrix& m : matrices) {
    const Csr<float, int32_t> da = m.csr.to(MemorySpace::device);
    for (int64_t F : features) {
      const DenseMatrix<float> db = uniform_dense<float>(m.csr.cols, F, 7).to(MemorySpace::device);
      DenseMatrix<float> dc(m.csr.rows, F, MemorySpace::device);
      const schedule::Problem problem = schedule::describe(schedule::Op::spmm, da.view(), F, F, F);
      auto run = [&](const schedule::Schedule& s) {
        ops::SpmmOptions o;
        o.validate = false;
        o.schedule = s;
        ops::spmm(ctx, da.view(), db.view(), dc.view(), o);
      };
      auto result = [&] {
        ctx.synchronize();
        return dc.buffer().to_vector();
      };
      // cuSPARSE, best algorithm; its output is the check for ours.
      double cusparse_ms = INFINITY;
      std::string cusparse_best;
      std::vector<float> want;
      for (int alg : {1, 2, 3}) {
        const schedule::Schedule s = schedule::parse(schedule::Op::spmm, "csr.cusparse:alg=" + std::to_string(alg));
        const double ms = timer.median_ms([&] { run(s); }, reps);
        if (ms < cusparse_ms) cusparse_ms = ms, cusparse_best = s.to_string();
        if (want.empty()) want = result();
      }
      const schedule::Schedule def = schedule::default_schedule(problem);
      run(def);
      const double def_err = relative_error(result(), want);
      TSR_CHECK(def_err < 1e-4, m.name, " F=", F, ": default schedule differs from cuSPARSE by ", def_err);
      const double default_ms = timer.median_ms([&] { run(def); }, reps);
      // Sweep the row-split space briefly, then time the winner like the others.
      schedule::Schedule best = def;
      double best_sweep = INFINITY;
      for (const schedule::Schedule& s : schedule::space(problem)) {
        // The sweep covers sub-warps of 4..32 threads and blocks of 128..512 threads.
        if (s.variant != "csr.row_split" || s.knob("tpr") < 4) continue;
        const int64_t threads = s.knob("tpr") * s.knob("rpb");
        if (threads < 128 || threads > 512) continue;
        const double ms = timer.median_ms([&] { run(s); }, sweep_reps, 1);
        if (ms < best_sweep) best_sweep = ms, best = s;
      }
      run(best);
      TSR_CHECK(relative_error(result(), want) < 1e-4, m.name, ": best schedule differs from cuSPARSE");
      const double best_ms = timer.median_ms([&] { run(best); }, reps);
      const double nnz = double(m.csr.nnz()), rows = double(m.csr.rows), cols = double(m.csr.cols);
      const double a_bytes = nnz * 8 + (rows + 1) * 4;
      const double reuse_bytes = a_bytes + cols * F * 4 + rows * F * 4;
      const double noreuse_bytes = a_bytes + nnz * F * 4 + rows * F * 4;
      const double floor_reuse_ms = reuse_bytes / (copy_gbps * 1e9) * 1e3;
      const double floor_noreuse_ms = noreuse_bytes / (copy_gbps * 1e9) * 1e3;
      const double speedup = cusparse_ms / default_ms;
      speedups.push_back(speedup);
      cases.push_back({{"matrix", m.name}, {"rows", m.csr.rows}, {"nnz", m.csr.nnz()}, {"F", F},
                       {"dtype", "f32"}, {"default_schedule", def.to_string()},
                       {"default_ms", default_ms}, {"best_schedule", best.to_string()},
                       {"best_ms", best_ms}, {"cusparse_best", cusparse_best},
                       {"cusparse_ms", cusparse_ms}, {"speedup_default_vs_cusparse", speedup},
                       {"speedup_best_vs_cusparse", cusparse_ms / best_ms},
                       {"gflops_default", 2 * nnz * F / (default_ms * 1e-3) * 1e-9},
                       {"floor_perfect_reuse_ms", floor_reuse_ms},
                       {"floor_no_reuse_ms", floor_noreuse_ms},
                       {"default_fraction_of_reuse_floor", floor_reuse_ms / default_ms},
                       {"default_fraction_of_no_reuse_floor", floor_noreuse_ms / default_ms}});
      std::printf("| %s | %lld | %lld | `%s` | %.3f | `%s` | %.3f | `%s` | %.3f | %.2fx | %.2fx | %.0f%% |\n",
                  m.name.c_str(), (long long)m.csr.nnz(), (long long)F, def.to_string().c_str(),
                  default_ms, best.to_string().c_str(), best_ms, cusparse_best.c_str(), cusparse_ms,
                  speedup, cusparse_ms / best_ms, 100 * floor_noreuse_ms / default_ms);
      std::fflush(stdout);
      write_results(false);
    }
  }
  const auto [geomean, min_speedup] = write_results(true);
  std::printf("\ngeomean default/cuSPARSE %.3fx, min %.3fx over %zu cases; copy %.0f GB/s; wrote %s\n",
              geomean, min_speedup, speedups.size(), copy_gbps, (dir / "spmm.json").c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "spmm_gpu: error: %s\n", e.what());
  return 1;
}
