// CPU SpMM, C[rows, F] = A[rows, cols] * B[cols, F] in f32: tessera::ops::spmm (CSR row split)
// against Eigen's SparseMatrix<float, RowMajor> * dense, side by side in one run.
//
// Matrices: the SuiteSparse .mtx files in <data>/mtx (data = $TESSERA_DATA, else
// TESSERA_SHARED_DATA; absent files are skipped) and one R-MAT graph (scale 16, edge factor 16,
// seed 1, about 1M draws). F in {32, 128}. B is uniform in [-1, 1) (tessera::Rng, never zeros).
//
// Cases per (matrix, F), all on 2 threads unless named *_1thread:
//   tessera           ops::spmm, validate = false (the matrix was validated once at load)
//   tessera_validate  ops::spmm, validate = true (adds the O(nnz) structural check)
//   eigen_rowmajor    C.noalias() = A * B with B, C Eigen::Matrix<float, Dynamic, Dynamic, RowMajor>
//   eigen_colmajor    the same with column-major B and C
// plus 1-thread runs of all three on the largest matrices, which show which paths OpenMP
// actually speeds up, and the two floors of DESIGN.md: measured copy bandwidth (L3-resident and
// DRAM-sized buffers) and measured AVX2 FMA peak, both on 2 threads.
//
// Every result is checked once before timing: each output is poisoned with NaN, computed, and
// compared with a float64 reference and with the other implementations (max-norm relative error
// below 1e-4); a mismatch aborts the program with a message.
//
// Timing: real time (the ops are multithreaded), each case 20 repetitions of at least 0.1 s after
// 0.05 s of warm-up, median reported. Inputs stay cache-warm for every implementation alike (a
// GNN layer reuses one matrix over and over).
#include <benchmark/benchmark.h>
#include <omp.h>

#include <Eigen/Dense>
#include <Eigen/Sparse>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <sys/stat.h>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include "core/context.h"
#include "core/dense.h"
#include "core/error.h"
#include "formats/convert.h"
#include "formats/generators.h"
#include "formats/io.h"
#include "formats/sparse.h"
#include "formats/validate.h"
#include "ops/spmm/spmm.h"

#ifndef TESSERA_SHARED_DATA
#define TESSERA_SHARED_DATA "../shared/data"
#endif

namespace {

using tessera::Csr;
using tessera::DenseMatrix;
using EigenSparse = Eigen::SparseMatrix<float, Eigen::RowMajor, int>;
using EigenRowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using EigenColMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;

constexpr int kThreads = 2;
constexpr double kMinTime = 0.1;        // seconds per repetition
constexpr double kWarmUp = 0.05;        // seconds before the first repetition
constexpr int kRepetitions = 20;        // the median of these is reported
constexpr double kMaxRelError = 1e-4;   // max-norm relative error allowed against the reference
const int kFeatureWidths[] = {32, 128};

// The SuiteSparse files of ../shared/data/mtx, in the order of its README.
const char* const kMtxNames[] = {"bcsstk33", "bcsstk13", "fidapex6", "add32", "luxembourg",
                                 "ca-GrQc"};

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "spmm_cpu_vs_eigen: %s\n", message.c_str());
  std::exit(1);
}

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string data_dir() {
  const char* env = std::getenv("TESSERA_DATA");
  return env && *env ? std::string(env) : std::string(TESSERA_SHARED_DATA);
}

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  }
  return "unknown cpu";
}

// One sparse matrix in both libraries' containers.
struct Problem {
  std::string name;
  Csr<float, int32_t> csr;   // canonical: rows sorted by column, no duplicates
  EigenSparse eigen;         // the same entries, compressed row-major
  int64_t touched_cols = 0;  // distinct columns that hold an entry (rows of B that must be read)
};

// Dense operands for one (matrix, F): B three times (Tessera row-major, Eigen row- and
// column-major, equal values) and one output per implementation.
struct Operands {
  int64_t f = 0;
  DenseMatrix<float> b, c;
  EigenRowMajor b_row, c_row;
  EigenColMajor b_col, c_col;
};

struct Case {
  const Problem* problem = nullptr;
  Operands* ops = nullptr;
};

Problem make_problem(std::string name, Csr<float, int32_t> csr) {
  tessera::validate(csr, tessera::ValidateOptions{true, true, true});
  Problem p;
  p.name = std::move(name);
  p.csr = std::move(csr);
  const auto& a = p.csr;
  Eigen::Map<const EigenSparse> map(a.rows, a.cols, a.nnz(), a.indptr.data(), a.indices.data(),
                                    a.values.data());
  p.eigen = map;
  p.eigen.makeCompressed();
  std::vector<char> seen(size_t(a.cols), 0);
  for (int64_t e = 0; e < a.nnz(); ++e) seen[size_t(a.indices[e])] = 1;
  p.touched_cols = std::count(seen.begin(), seen.end(), 1);
  return p;
}

std::vector<std::unique_ptr<Problem>> load_problems() {
  std::vector<std::unique_ptr<Problem>> problems;
  const std::string dir = data_dir() + "/mtx";
  for (const char* name : kMtxNames) {
    const std::string path = dir + "/" + name + ".mtx";
    if (!file_exists(path)) {
      std::fprintf(stderr, "spmm_cpu_vs_eigen: %s is absent, skipping it\n", path.c_str());
      continue;
    }
    // Symmetric files come back expanded; canonicalize sorts rows and merges duplicates.
    auto coo = tessera::read_matrix_market<float, int32_t>(path);
    auto csr = tessera::canonicalize(tessera::coo_to_csr(coo));
    problems.push_back(std::make_unique<Problem>(make_problem(name, std::move(csr))));
  }
  tessera::RmatParams rmat;
  rmat.scale = 16;
  rmat.edge_factor = 16;
  tessera::GenValues values;
  values.seed = 1;
  problems.push_back(std::make_unique<Problem>(
      make_problem("rmat16", tessera::generate_rmat<float, int32_t>(rmat, values))));
  return problems;
}

std::unique_ptr<Operands> make_operands(const Problem& p, int64_t f, uint64_t seed) {
  auto o = std::make_unique<Operands>();
  o->f = f;
  const int64_t k = p.csr.cols, m = p.csr.rows;
  o->b = tessera::uniform_dense<float>(k, f, seed);
  o->b_row = Eigen::Map<const EigenRowMajor>(o->b.data(), k, f);
  o->b_col = o->b_row;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  o->c = DenseMatrix<float>(m, f, nan);
  o->c_row = EigenRowMajor::Constant(m, f, nan);
  o->c_col = EigenColMajor::Constant(m, f, nan);
  return o;
}

// ---------------------------------------------------------------------------------------------
// Correctness, once per (matrix, F), before anything is timed.

// max |x - ref| / max |ref| over all elements; NaN anywhere (an unwritten, poisoned element)
// gives infinity.
template <class At>
double max_rel_error(At at, const std::vector<double>& ref, int64_t rows, int64_t f) {
  double err = 0.0, scale = 0.0;
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < f; ++j) {
      const double r = ref[size_t(i * f + j)], v = double(at(i, j));
      if (!std::isfinite(v)) return std::numeric_limits<double>::infinity();
      err = std::max(err, std::abs(v - r));
      scale = std::max(scale, std::abs(r));
    }
  }
  return scale > 0.0 ? err / scale : err;
}

void spmm_tessera(tessera::Context& ctx, const Case& c, bool validate) {
  tessera::ops::SpmmOptions options;
  options.validate = validate;
  const DenseMatrix<float>& b = c.ops->b;
  tessera::ops::spmm(ctx, c.problem->csr.view(), b.view(), c.ops->c.view(), options);
}

void check_case(tessera::Context& ctx, const Case& c) {
  const Problem& p = *c.problem;
  Operands& o = *c.ops;
  const int64_t m = p.csr.rows, f = o.f;
  // float64 reference.
  std::vector<double> ref(size_t(m * f), 0.0);
  for (int64_t i = 0; i < m; ++i) {
    double* out = &ref[size_t(i * f)];
    for (int32_t e = p.csr.indptr[i]; e < p.csr.indptr[i + 1]; ++e) {
      const double a = p.csr.values[e];
      const float* brow = o.b.data() + int64_t(p.csr.indices[e]) * f;
      for (int64_t j = 0; j < f; ++j) out[j] += a * double(brow[j]);
    }
  }
  // Poisoned outputs (make_operands fills them with NaN), then one run of each implementation.
  spmm_tessera(ctx, c, /*validate=*/true);
  o.c_row.noalias() = p.eigen * o.b_row;
  o.c_col.noalias() = p.eigen * o.b_col;
  auto tessera_c = [&](int64_t i, int64_t j) { return o.c(i, j); };
  auto eigen_row_c = [&](int64_t i, int64_t j) { return o.c_row(i, j); };
  auto eigen_col_c = [&](int64_t i, int64_t j) { return o.c_col(i, j); };
  const double e_tessera = max_rel_error(tessera_c, ref, m, f);
  const double e_row = max_rel_error(eigen_row_c, ref, m, f);
  const double e_col = max_rel_error(eigen_col_c, ref, m, f);
  // Tessera against Eigen directly.
  std::vector<double> eigen_ref(size_t(m * f));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < f; ++j) eigen_ref[size_t(i * f + j)] = o.c_row(i, j);
  }
  const double e_vs_eigen = max_rel_error(tessera_c, eigen_ref, m, f);
  std::fprintf(stderr,
               "check %-10s F=%-3lld rel. error vs f64: tessera %.2e, eigen row-major %.2e, "
               "eigen col-major %.2e; tessera vs eigen %.2e\n",
               p.name.c_str(), (long long)f, e_tessera, e_row, e_col, e_vs_eigen);
  if (!(e_tessera < kMaxRelError && e_row < kMaxRelError && e_col < kMaxRelError &&
        e_vs_eigen < kMaxRelError)) {
    fail("results disagree on " + p.name + " at F=" + std::to_string(f) +
         " (relative error limit 1e-4); refusing to time wrong answers");
  }
}

// ---------------------------------------------------------------------------------------------
// Timed cases.

void set_counters(benchmark::State& state, const Case& c) {
  const Problem& p = *c.problem;
  const int64_t f = c.ops->f, rows = p.csr.rows, nnz = p.csr.nnz();
  // Compulsory traffic: A once (offsets, indices, values), each B row that A references once, C
  // written once. The working set decides which copy bandwidth is the floor (RESULTS.md).
  const double a_bytes = 4.0 * double(rows + 1) + 8.0 * double(nnz);
  const double bytes_floor =
      a_bytes + 4.0 * double(f) * double(p.touched_cols) + 4.0 * double(f) * double(rows);
  const double working_set =
      a_bytes + 4.0 * double(f) * double(p.csr.cols) + 4.0 * double(f) * double(rows);
  const double flops = tessera::ops::spmm_flops(nnz, f);
  using C = benchmark::Counter;
  state.counters["GFLOP/s"] = C(flops * 1e-9, C::kIsIterationInvariantRate);
  state.counters["GB/s_floor_bytes"] = C(bytes_floor * 1e-9, C::kIsIterationInvariantRate);
  state.counters["flops"] = flops;
  state.counters["bytes_floor"] = bytes_floor;
  state.counters["working_set_bytes"] = working_set;
  state.counters["rows"] = double(rows);
  state.counters["nnz"] = double(nnz);
  state.counters["F"] = double(f);
}

void bm_tessera(benchmark::State& state, Case c, bool validate, int threads) {
  tessera::Context ctx;
  ctx.set_cpu_threads(threads);
  for (auto _ : state) {
    spmm_tessera(ctx, c, validate);
    benchmark::ClobberMemory();
  }
  set_counters(state, c);
}

// Eigen reads its thread count from Eigen::setNbThreads (OpenMP underneath).
template <bool RowMajorDense>
void bm_eigen(benchmark::State& state, Case c, int threads) {
  Eigen::setNbThreads(threads);
  const EigenSparse& a = c.problem->eigen;
  for (auto _ : state) {
    if constexpr (RowMajorDense) {
      c.ops->c_row.noalias() = a * c.ops->b_row;
    } else {
      c.ops->c_col.noalias() = a * c.ops->b_col;
    }
    benchmark::ClobberMemory();
  }
  Eigen::setNbThreads(kThreads);
  set_counters(state, c);
}

// ---------------------------------------------------------------------------------------------
// Floors: copy bandwidth and FMA peak, measured with the same 2 threads.

struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};

void bm_copy(benchmark::State& state, size_t bytes) {
  std::unique_ptr<char, AlignedFree> src(static_cast<char*>(std::aligned_alloc(64, bytes)));
  std::unique_ptr<char, AlignedFree> dst(static_cast<char*>(std::aligned_alloc(64, bytes)));
  char* s = src.get();
  char* d = dst.get();
#pragma omp parallel num_threads(kThreads)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    const size_t lo = bytes * size_t(t) / size_t(n), hi = bytes * size_t(t + 1) / size_t(n);
    std::memset(s + lo, 1, hi - lo);  // first touch by the thread that copies the slice
    std::memset(d + lo, 0, hi - lo);
  }
  for (auto _ : state) {
#pragma omp parallel num_threads(kThreads)
    {
      const int t = omp_get_thread_num(), n = omp_get_num_threads();
      const size_t lo = bytes * size_t(t) / size_t(n), hi = bytes * size_t(t + 1) / size_t(n);
      std::memcpy(d + lo, s + lo, hi - lo);
    }
    benchmark::ClobberMemory();
  }
  // Bytes moved: each byte read once and written once.
  state.counters["GB/s"] =
      benchmark::Counter(2.0 * double(bytes) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["bytes"] = double(bytes);
}

// 12 independent 8-wide FMA chains per thread (enough to cover FMA latency on two pipes).
constexpr int kChains = 12;
constexpr int64_t kFmaSteps = 1 << 16;

float fma_chains(float seed) {
#if defined(__AVX2__) && defined(__FMA__)
  __m256 acc[kChains];
  for (int k = 0; k < kChains; ++k) acc[k] = _mm256_set1_ps(seed + float(k));
  const __m256 mul = _mm256_set1_ps(0.9999999f), add = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < kFmaSteps; ++i) {
    for (int k = 0; k < kChains; ++k) acc[k] = _mm256_fmadd_ps(acc[k], mul, add);
  }
  __m256 sum = acc[0];
  for (int k = 1; k < kChains; ++k) sum = _mm256_add_ps(sum, acc[k]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, sum);
  float total = 0.0f;
  for (float v : lanes) total += v;
  return total;
#else
  float acc[kChains][8];
  for (int k = 0; k < kChains; ++k) std::fill(acc[k], acc[k] + 8, seed + float(k));
  for (int64_t i = 0; i < kFmaSteps; ++i) {
    for (int k = 0; k < kChains; ++k) {
      for (int l = 0; l < 8; ++l) acc[k][l] = std::fma(acc[k][l], 0.9999999f, 1e-7f);
    }
  }
  float total = 0.0f;
  for (int k = 0; k < kChains; ++k) {
    for (int l = 0; l < 8; ++l) total += acc[k][l];
  }
  return total;
#endif
}

void bm_fma_peak(benchmark::State& state) {
  for (auto _ : state) {
    float sink = 0.0f;
#pragma omp parallel num_threads(kThreads) reduction(+ : sink)
    sink += fma_chains(float(omp_get_thread_num()));
    benchmark::DoNotOptimize(sink);
  }
  const double flops = 2.0 * 8.0 * kChains * double(kFmaSteps) * kThreads;
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

template <class B>
B* timed(B* b) {
  return b->UseRealTime()
      ->Unit(benchmark::kMicrosecond)
      ->MinTime(kMinTime)
      ->MinWarmUpTime(kWarmUp)
      ->Repetitions(kRepetitions)
      ->ReportAggregatesOnly(true);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  Eigen::setNbThreads(kThreads);

  std::vector<std::unique_ptr<Problem>> problems;
  try {
    problems = load_problems();
  } catch (const std::exception& e) {
    fail(std::string("loading the matrices failed: ") + e.what());
  }

  // Operands and the correctness check for every (matrix, F).
  std::vector<std::unique_ptr<Operands>> operands;
  std::vector<Case> cases;
  tessera::Context check_ctx;
  check_ctx.set_cpu_threads(kThreads);
  uint64_t seed = 1000;
  for (const auto& p : problems) {
    for (int f : kFeatureWidths) {
      operands.push_back(make_operands(*p, f, ++seed));
      cases.push_back({p.get(), operands.back().get()});
      try {
        check_case(check_ctx, cases.back());
      } catch (const std::exception& e) {
        fail("checking " + p->name + " at F=" + std::to_string(f) + " threw: " + e.what());
      }
    }
  }

  // Which matrices also get 1-thread runs: the R-MAT graph and the largest file (by nnz).
  const Problem* largest_file = nullptr;
  for (const auto& p : problems) {
    if (p->name != "rmat16" && (!largest_file || p->csr.nnz() > largest_file->csr.nnz())) {
      largest_file = p.get();
    }
  }

  for (const Case& c : cases) {
    const std::string base =
        "spmm/" + c.problem->name + "/F:" + std::to_string(c.ops->f) + "/";
    timed(benchmark::RegisterBenchmark((base + "tessera").c_str(), bm_tessera, c, false, kThreads));
    timed(benchmark::RegisterBenchmark((base + "tessera_validate").c_str(), bm_tessera, c, true,
                                       kThreads));
    timed(benchmark::RegisterBenchmark((base + "eigen_rowmajor").c_str(), bm_eigen<true>, c,
                                       kThreads));
    timed(benchmark::RegisterBenchmark((base + "eigen_colmajor").c_str(), bm_eigen<false>, c,
                                       kThreads));
    if (c.problem->name == "rmat16" || c.problem == largest_file) {
      timed(benchmark::RegisterBenchmark((base + "tessera_1thread").c_str(), bm_tessera, c, false,
                                         1));
      timed(benchmark::RegisterBenchmark((base + "eigen_rowmajor_1thread").c_str(),
                                         bm_eigen<true>, c, 1));
      timed(benchmark::RegisterBenchmark((base + "eigen_colmajor_1thread").c_str(),
                                         bm_eigen<false>, c, 1));
    }
  }
  timed(benchmark::RegisterBenchmark("floor/copy_l3", bm_copy, size_t(8) << 20));
  timed(benchmark::RegisterBenchmark("floor/copy_dram", bm_copy, size_t(512) << 20));
  timed(benchmark::RegisterBenchmark("floor/fma_peak_avx2", bm_fma_peak));

  const char* commit = std::getenv("TESSERA_BENCH_COMMIT");
  benchmark::AddCustomContext("tessera_commit", commit && *commit ? commit : "unknown");
  benchmark::AddCustomContext("tessera_device",
                              "cpu: " + cpu_model_name() + " x" + std::to_string(kThreads) +
                                  " threads");
  benchmark::AddCustomContext("eigen_version", std::to_string(EIGEN_WORLD_VERSION) + "." +
                                                   std::to_string(EIGEN_MAJOR_VERSION) + "." +
                                                   std::to_string(EIGEN_MINOR_VERSION));
  benchmark::AddCustomContext("data_dir", data_dir());
#if defined(__AVX2__) && defined(__FMA__)
  benchmark::AddCustomContext("bench_isa", "x86-64-v3 (AVX2 + FMA)");
#else
  benchmark::AddCustomContext("bench_isa", "compiler default");
#endif

  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
