// CPU k-means: ops::kmeans against FAISS's faiss::Clustering (Debian's libfaiss-dev, OpenBLAS),
// side by side, same data, same thread count, same number of iterations, random initialisation
// from the data in both, and no subsampling (FAISS's max_points_per_centroid raised past N).
// Ours runs one more assignment than FAISS (the labels it returns belong to the final
// centroids), which the per-iteration times include. Wall clock, median of --reps runs, the
// two peers' runs alternating.
// Writes <out>/kmeans_cpu.json with a top-level `summary` and prints a table.
//   kmeans_cpu_vs_faiss [--quick] [--threads 2] [--reps 3] [--out bench/results/cpu] [--data DIR]
#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <omp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "core/dense.h"
#include "core/random.h"
#include "formats/io.h"
#include "ops/kmeans/kmeans.h"

using namespace tessera;
using json = nlohmann::ordered_json;

namespace {

struct Case {
  std::string name;
  int64_t batch, n, d, k;
  int iterations;
  DenseMatrix<float> x;  // [batch * n, d]
};

// Points drawn around k_true Gaussian-ish centres (sums of uniforms), so that the clustering has
// structure to find, as embeddings do; deterministic by seed.
DenseMatrix<float> clustered(int64_t rows, int64_t d, int64_t k_true, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> centres(size_t(k_true * d));
  for (float& c : centres) c = float(rng.uniform(-1, 1));
  DenseMatrix<float> x(rows, d);
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t c = int64_t(rng.below(uint64_t(k_true)));
    for (int64_t t = 0; t < d; ++t) {
      const double noise = (rng.uniform() + rng.uniform() + rng.uniform() - 1.5) * 0.3;
      x(i, t) = centres[size_t(c * d + t)] + float(noise);
    }
  }
  return x;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double seconds_of(const std::function<void()>& fn) {
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown cpu";
}


}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{"CPU k-means: Tessera against FAISS"};
  bool quick = false;
  int threads = 2, reps = 3;
  std::string out_dir = "bench/results/cpu", data_dir = TESSERA_SHARED_DATA;
  app.add_flag("--quick", quick, "small cases only");
  app.add_option("--threads", threads, "threads for both (OpenMP; OpenBLAS follows OMP)");
  app.add_option("--reps", reps, "runs per case (median)");
  app.add_option("--out", out_dir, "results folder");
  app.add_option("--data", data_dir, "shared data folder (SIFT under ann/ngt_sift5k)");
  if (const int code = bench::parse_command_line(app, argc, argv); code >= 0) return code;
  omp_set_num_threads(threads);

  std::vector<Case> cases;
  const std::string sift = data_dir + "/ann/ngt_sift5k/sift5k_base.fvecs";
  if (std::filesystem::exists(sift))
    cases.push_back({"sift5k", 1, 5000, 128, 64, 20, read_vecs<float>(sift)});
  cases.push_back({"clustered-100k", 1, 100000, 128, 1024, 10, clustered(100000, 128, 2000, 1)});
  cases.push_back({"batched-32x16k", 32, 16384, 128, 100, 10, clustered(32 * 16384, 128, 500, 2)});
  if (!quick) {
    cases.push_back({"clustered-1M", 1, 1000000, 128, 1024, 10, clustered(1000000, 128, 4000, 3)});
    cases.push_back(
        {"clustered-200k-k4096", 1, 200000, 128, 4096, 10, clustered(200000, 128, 8000, 4)});
  }

  Context ctx;
  json rows = json::array();
  std::vector<double> speedups;
  std::printf(
      "| case | B x N x D | K | iters | Tessera s/iter | GFLOP/s | FAISS s/iter | FAISS / Tessera "
      "| Tessera inertia | FAISS objective |\n");
  std::printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const Case& c : cases) {
    // Tessera: all B problems in one call.
    ops::KmeansOptions o;
    o.init = ops::KmeansInit::random;
    o.max_iterations = c.iterations;
    o.fixed_iterations = true;
    o.threads = threads;
    o.seed = 1;
    const BatchedDenseView<const float> x =
        contiguous_batch<const float>(c.x.data(), c.batch, c.n, c.d);
    std::vector<double> ours, theirs;
    double our_inertia = 0, their_objective = 0;
    int our_iterations = 0;
    // Runs alternate (ours, FAISS, ours, ...) so that a busy spell on a shared machine hits both.
    // FAISS: one Clustering per problem (it has no batched API), on an exact flat L2 index.
    for (int r = 0; r < reps; ++r) {
      ours.push_back(seconds_of([&] {
        const ops::KmeansResult res = ops::kmeans<float>(ctx, x, c.k, o);
        our_inertia = 0;
        for (double v : res.inertia) our_inertia += v;
        our_iterations = res.iterations;
      }));
      theirs.push_back(seconds_of([&] {
        their_objective = 0;
        for (int64_t b = 0; b < c.batch; ++b) {
          faiss::ClusteringParameters p;
          p.niter = c.iterations;
          p.seed = 1234 + int(b);
          p.max_points_per_centroid = int(c.n);  // never subsample
          p.min_points_per_centroid = 1;
          p.verbose = false;
          faiss::Clustering clus(int(c.d), int(c.k), p);
          faiss::IndexFlatL2 index(int(c.d));
          clus.train(c.n, c.x.data() + b * c.n * c.d, index);
          their_objective += clus.iteration_stats.back().obj;
        }
      }));
    }
    TSR_CHECK(our_iterations == c.iterations, c.name, ": Tessera stopped after ", our_iterations,
              " iterations, not ", c.iterations);
    const double t_ours = median(ours) / c.iterations, t_theirs = median(theirs) / c.iterations;
    const double flops = 2.0 * double(c.batch) * double(c.n) * double(c.k) * double(c.d);
    const double speedup = t_theirs / t_ours;
    speedups.push_back(speedup);
    rows.push_back({{"case", c.name},
                    {"batch", c.batch},
                    {"n", c.n},
                    {"d", c.d},
                    {"k", c.k},
                    {"iterations", c.iterations},
                    {"tessera_seconds_per_iteration", t_ours},
                    {"faiss_seconds_per_iteration", t_theirs},
                    {"speedup_vs_faiss", speedup},
                    {"tessera_assignment_gflops", flops / t_ours * 1e-9},
                    {"tessera_inertia", our_inertia},
                    {"faiss_objective", their_objective},
                    {"tessera_runs_s", ours},
                    {"faiss_runs_s", theirs}});
    std::printf(
        "| %s | %lld x %lld x %lld | %lld | %d | %.4f | %.1f | %.4f | **%.2fx** | %.4g | %.4g |\n",
        c.name.c_str(), (long long)c.batch, (long long)c.n, (long long)c.d, (long long)c.k,
        c.iterations, t_ours, flops / t_ours * 1e-9, t_theirs, speedup, our_inertia,
        their_objective);
    std::fflush(stdout);
  }
  const auto [geomean, lowest] = bench::geomean_and_min(speedups);
  json doc;
  doc["summary"] = {{"device", "cpu: " + cpu_model() + " x" + std::to_string(threads) + " threads"},
                    {"commit", bench::git_commit()},
                    {"date", bench::utc_now()},
                    {"geomean_speedup_vs_faiss", geomean},
                    {"min_speedup_vs_faiss", lowest},
                    {"cases", speedups.size()},
                    {"faiss", "libfaiss-dev 1.7.3 (Debian 12), OpenBLAS (OpenMP)"},
                    {"timing", "wall clock, median of runs, per iteration = total / iterations"},
                    {"quick", quick}};
  doc["cases"] = rows;
  std::filesystem::create_directories(out_dir);
  const std::string file = out_dir + (quick ? "/kmeans_cpu_quick.json" : "/kmeans_cpu.json");
  std::ofstream(file) << doc.dump(2) << "\n";
  std::printf("\ngeomean FAISS/Tessera %.2fx, min %.2fx over %zu cases; wrote %s\n", geomean,
              lowest, speedups.size(), file.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "kmeans_cpu_vs_faiss: error: %s\n", e.what());
  return 1;
}
