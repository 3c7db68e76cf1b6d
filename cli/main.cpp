// The `tessera` command line: info, convert, spmm, sddmm, kmeans, bench, demo. Every failure is one line on
// stderr and a non-zero exit status; no exception escapes main.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cerrno>
#include <cfloat>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <limits>
#include <type_traits>
#include <vector>

#include <omp.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/matrix_source.h"
#include "core/config.h"
#include "core/device.h"
#include "core/error.h"
#include "core/timer.h"
#include "formats/convert.h"
#include "formats/generators.h"
#include "formats/io.h"
#include "formats/stats.h"
#include "ops/cpu/kernels.h"
#include "ops/device_schedule.h"
#include "ops/kmeans/kmeans.h"
#include "ops/sddmm/sddmm.h"
#include "ops/spmm/spmm.h"
#include "tests/reference/kmeans_reference.h"
#include "tests/reference/reference.h"

namespace tessera::cli {
namespace {

// Options shared by the subcommands that take a matrix.
struct MatrixOptions {
  std::string input, generate, format = "csr", dtype = "f32", itype = "i32";
  int64_t block = 4, ell_width = -1, hyb_c = 1;
  int hyb_k = 5;
  ConvertParams params() const { return {block, block, ell_width, HybParams{hyb_c, hyb_k}}; }
};

struct RunOptions {
  int64_t features = 32;
  std::string device = "cpu";
  std::string schedule;
  std::string reduce = "sum";  // spmm only: sum|max|min|mean
  bool check = false, deterministic = false;
  int repeat = 10, threads = 0;
};

void add_matrix_options(CLI::App* app, MatrixOptions& m) {
  app->add_option("-i,--input", m.input,
                  "Matrix Market file (named .mtx or starting with %%MatrixMarket) or edge list; "
                  "duplicate entries are summed");
  app->add_option("-g,--generate", m.generate,
                  "generator spec, e.g. rmat:scale=16,ef=16 | er:rows=1000,density=0.01 | "
                  "banded:n=1000,lower=2 | clustered:n=4096,block=64 | powerlaw:n=10000,deg=16");
  app->add_option("-f,--format", m.format, "coo|csr|csc|bsr|ell|ragged|hybrid")->capture_default_str();
  app->add_option("--dtype", m.dtype, "value type: f32|bf16|f16 (convert also takes f64)")->capture_default_str();
  app->add_option("--itype", m.itype, "index type: i32|i64")->capture_default_str();
  app->add_option("--block", m.block, "BSR block size (square)")->capture_default_str();
  app->add_option("--ell-width", m.ell_width, "ELL width (-1: longest row)")->capture_default_str();
  app->add_option("--hyb-c", m.hyb_c, "hybrid: column partitions c")->capture_default_str();
  app->add_option("--hyb-k", m.hyb_k, "hybrid: widest bucket 2^k")->capture_default_str();
}

void add_run_options(CLI::App* app, RunOptions& r) {
  app->add_option("-F,--features", r.features, "feature width F")->capture_default_str();
  app->add_option("--device", r.device, "cpu|cuda")->capture_default_str();
  app->add_flag("--check", r.check, "compare with the float64 reference");
  app->add_option("--repeat", r.repeat, "timed repetitions (median reported)")->capture_default_str();
  app->add_option("--threads", r.threads, "CPU threads (0: OpenMP default)")->capture_default_str();
  app->add_option("--schedule", r.schedule,
                  "device kernel, e.g. csr.merge_path:tpr=32,vec=4,ipt=256 or csr.cusparse:alg=2 "
                  "(spmm), csr.edge_group:tpe=8,vec=4,ept=32 (sddmm); default: the heuristic");
  app->add_flag("--deterministic", r.deterministic,
                "require the same bits on every run (rejects schedules that do not promise it)");
}

// Calls fn(V{}, I{}) for the value and index types named on the command line.
template <bool kAllowF64, class Fn>
int with_types(const std::string& dtype, const std::string& itype, Fn&& fn) {
  TSR_CHECK(itype == "i32" || itype == "i64", "--itype must be i32 or i64 (got '", itype, "')");
  TSR_CHECK(dtype == "f32" || dtype == "bf16" || dtype == "f16" || (kAllowF64 && dtype == "f64"),
            "--dtype must be f32, bf16, f16", kAllowF64 ? " or f64" : " (f64 is for convert only)",
            " (got '", dtype, "')");
  const DType v = parse_dtype(dtype);
  const bool i64 = itype == "i64";
  switch (v) {
    case DType::f32: return i64 ? fn(float{}, int64_t{}) : fn(float{}, int32_t{});
    case DType::bf16: return i64 ? fn(bf16{}, int64_t{}) : fn(bf16{}, int32_t{});
    case DType::f16: return i64 ? fn(f16{}, int64_t{}) : fn(f16{}, int32_t{});
    case DType::f64:
      if constexpr (kAllowF64) {
        return i64 ? fn(double{}, int64_t{}) : fn(double{}, int32_t{});
      } else {
        TSR_FAIL("--dtype f64 is a storage type only; ops take f32, bf16 or f16");
      }
    default: TSR_FAIL("--dtype must be f32, bf16 or f16 (got ", dtype, ")");
  }
}

// The text with control characters (a file name or token from the input may hold any byte) as
// \xNN, so that an error stays one line and cannot drive the terminal.
std::string printable(const std::string& text) {
  std::string out;
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out += ch;
    }
  }
  return out;
}

// What the command is doing, for the out-of-memory message ("out of memory while ...").
std::string g_stage = "parsing the command line";
void stage(std::string what) { g_stage = std::move(what); }

std::string source_text(const std::string& input, const std::string& generate) {
  return input.empty() ? "generating '" + generate + "'" : "reading " + input;
}

void check_threads(int threads) {
  const int limit = std::max(64, 4 * omp_get_num_procs());
  TSR_CHECK(threads >= 0 && threads <= limit, "--threads ", threads, " must be in [0, ", limit,
            "] (0: OpenMP's default)");
}

void check_matrix_options(const MatrixOptions& m) {
  TSR_CHECK(m.block >= 1 && m.block <= 1024, "--block ", m.block, " must be in [1, 1024]");
  TSR_CHECK(m.ell_width >= -1, "--ell-width ", m.ell_width,
            " must be a width >= 0, or -1 for the longest row");
  TSR_CHECK(m.hyb_c >= 1 && m.hyb_c <= 1024, "--hyb-c ", m.hyb_c, " must be in [1, 1024]");
  TSR_CHECK(m.hyb_k >= 0 && m.hyb_k <= 20, "--hyb-k ", m.hyb_k, " must be in [0, 20]");
}

void check_run_options(const RunOptions& r) {
  check_threads(r.threads);
  TSR_CHECK(r.features >= 0, "--features must be non-negative (got ", r.features, ")");
  TSR_CHECK(r.repeat >= 1 && r.repeat <= 1000000, "--repeat ", r.repeat, " must be in [1, 1000000]");
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Runs fn once to warm up, then `repeat` times; returns the median seconds.
template <class Fn>
double time_median(Context& ctx, int repeat, Fn&& fn) {
  fn();
  ctx.synchronize();
  std::vector<double> times;
  for (int r = 0; r < repeat; ++r) {
    WallTimer t;
    fn();
    ctx.synchronize();
    times.push_back(t.seconds());
  }
  return median(times);
}

MemorySpace parse_device(const std::string& d) {
  TSR_CHECK(d == "cpu" || d == "cuda", "--device must be cpu or cuda (got ", d, ")");
  if (d == "cpu") return MemorySpace::host;
  TSR_CHECK(kCudaEnabled, "--device cuda: this build of Tessera has no CUDA support");
  TSR_CHECK(device::available(), "--device cuda: no CUDA device is available");
  return MemorySpace::device;
}

int cmd_info() {
  std::printf("tessera %s\n", kVersion);
  std::printf("cuda compiled: %s\n", kCudaEnabled ? "yes" : "no");
  const int n = device::count();
  std::printf("cuda devices: %d\n", n);
  for (int d = 0; d < n; ++d) std::printf("  device %d: %s\n", d, device::name(d).c_str());
  std::printf("openmp threads: %d\n", omp_get_max_threads());
  std::printf("cpu kernels: %s\n", ops::cpu::cpu_has_x86_64_v3() ? "x86-64-v3 (AVX2+FMA)" : "baseline");
  return 0;
}

int cmd_convert(const MatrixOptions& m, const std::string& output, bool json) {
  check_matrix_options(m);
  return with_types<true>(m.dtype, m.itype, [&](auto v, auto i) {
    using V = decltype(v);
    using I = decltype(i);
    if (!output.empty()) output_destination(output, "convert --output");  // before any work
    stage(source_text(m.input, m.generate));
    const Csr<V, I> csr = load_matrix<V, I>(m.input, m.generate);
    std::vector<Format> formats;
    if (m.format == "all") {
      formats = {Format::coo, Format::csr, Format::csc, Format::bsr, Format::ell, Format::ragged,
                 Format::hybrid};
    } else {
      formats = {parse_format(m.format)};
    }
    // Every conversion first, then the file: a command that fails changes nothing, and prints
    // nothing but its error.
    std::vector<std::string> lines;
    for (Format f : formats) {
      stage(std::string("converting to ") + format_name(f));
      WallTimer t;
      const AnySparse<V, I> a = from_csr(csr, f, m.params());
      const double seconds = t.seconds();
      const FormatStats st = format_stats(a);
      char timing[64];
      std::snprintf(timing, sizeof timing, "  (converted in %.3f ms)", seconds * 1e3);
      lines.push_back(json ? st.to_json() : st.to_string() + timing);
    }
    if (!output.empty()) {
      stage("writing " + output);
      write_matrix_market(output, csr);
      lines.push_back("wrote " + output);
    }
    for (const std::string& line : lines) std::printf("%s\n", line.c_str());
    return 0;
  });
}

// The matrix moved to `space` (conversions run on the host; device SpMM takes CSR, BSR, ELL and
// Hybrid).
template <class V, class I>
AnySparse<V, I> to_space(AnySparse<V, I> a, MemorySpace space) {
  if (space == MemorySpace::host) return a;
  return std::visit(
      [&](const auto& m) -> AnySparse<V, I> {
        using M = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<M, RaggedMatrix<V, I>>) {
          TSR_FAIL("the ragged format has no device copy");
        } else {
          return m.to(space);
        }
      },
      a);
}

// The schedule a device CSR op ran when the user named none: the default heuristic's choice, as
// the op made it (its statistics of A are cached in ctx by then), printed beside the time.
// Empty for other formats and the host.
template <class V, class I, class T, class U>
std::string default_schedule_ran(Context& ctx, schedule::Op op, const AnySparse<V, I>& a, DenseView<T> first,
                                 DenseView<U> second, const RunOptions& r) {
  const auto* csr = std::get_if<Csr<V, I>>(&a);
  if (!r.schedule.empty() || csr == nullptr || csr->space() != MemorySpace::device) return "";
  const int64_t features = first.cols;
  return ops::detail::choose_schedule(ctx, op, csr->view(), features, first.ld, second.ld, std::nullopt,
                                      r.deterministic, ops::detail::operand_align(first, second))
             .to_string() +
         " (default)";
}

template <class V, class I>
int run_spmm(const MatrixOptions& m, const RunOptions& r) {
  check_matrix_options(m);
  check_run_options(r);
  const MemorySpace space = parse_device(r.device);
  Context ctx;
  ctx.set_cpu_threads(r.threads);
  stage(source_text(m.input, m.generate));
  const Csr<V, I> csr = load_matrix<V, I>(m.input, m.generate);
  require_host_memory((double(csr.cols) * sizeof(V) + double(csr.rows) * sizeof(float)) * double(r.features),
                      "B (" + std::to_string(csr.cols) + " x F) and C (" + std::to_string(csr.rows) +
                          " x F) at F = " + std::to_string(r.features));
  const Format format = parse_format(m.format);
  TSR_CHECK(space == MemorySpace::host || format == Format::csr || format == Format::bsr ||
                format == Format::ell || format == Format::hybrid,
            "--device cuda runs SpMM on csr, bsr, ell and hybrid (got ", m.format, ")");
  stage("allocating B and C");
  const DenseMatrix<V> b = uniform_dense<V>(csr.cols, r.features, 17);
  DenseMatrix<float> c(csr.rows, r.features, space);
  stage("converting to " + m.format);
  const AnySparse<V, I> a = to_space(from_csr(csr, format, m.params()), space);
  const DenseMatrix<V> bd = b.to(space);
  stage("running spmm");
  ops::SpmmOptions options;
  options.deterministic = r.deterministic;
  bool known = false;
  for (ops::SpmmReduce op : {ops::SpmmReduce::sum, ops::SpmmReduce::max, ops::SpmmReduce::min,
                             ops::SpmmReduce::mean}) {
    if (r.reduce == ops::spmm_reduce_name(op)) options.reduce = op, known = true;
  }
  TSR_CHECK(known, "unknown --reduce '", r.reduce, "' (sum, max, min or mean)");
  if (!r.schedule.empty()) {
    options.schedule = schedule::parse(schedule::Op::spmm, r.schedule);
    TSR_CHECK(space == MemorySpace::device, "--schedule picks a device kernel; add --device cuda");
  }
  const double seconds =
      time_median(ctx, r.repeat, [&] { ops::spmm(ctx, a, bd.view(), c.view(), options); });
  const double gflops = ops::spmm_flops(csr.nnz(), r.features) / seconds * 1e-9;
  std::string ran;  // the schedule that ran, for the report (the reductions have one kernel)
  if (options.reduce == ops::SpmmReduce::sum) {
    ran = r.schedule.empty() ? default_schedule_ran(ctx, schedule::Op::spmm, a, bd.view(), c.view(), r)
                             : r.schedule;
  }
  std::printf("spmm%s%s  %s  %lldx%lld nnz=%lld F=%lld %s/%s %s%s%s  median %.3f ms  %.2f GFLOP/s\n",
              r.reduce == "sum" ? "" : " reduce=", r.reduce == "sum" ? "" : r.reduce.c_str(),
              m.format.c_str(), (long long)csr.rows, (long long)csr.cols, (long long)csr.nnz(),
              (long long)r.features, m.dtype.c_str(), m.itype.c_str(), r.device.c_str(),
              ran.empty() ? "" : " ", ran.c_str(), seconds * 1e3, gflops);
  if (r.check) {
    const DenseMatrix<float> got = c.to(MemorySpace::host);
    const double err = reference::relative_error(
        got.data(), r.reduce == "sum" ? reference::spmm(csr, b) : reference::spmm_reduce(csr, b, r.reduce));
    // BSR on the GPU runs f32 on tensor cores as tf32 (both operands rounded to 2^-11).
    const bool tf32 = space == MemorySpace::device && format == Format::bsr && std::is_same_v<V, float>;
    const double tolerance = tf32 ? 4e-3 : 1e-4;
    const bool ok = err < tolerance;
    std::printf("check: %s (relative error %.2e vs float64 reference, tolerance %.0e)\n",
                ok ? "PASS" : "FAIL", err, tolerance);
    if (!ok) return 2;
  }
  return 0;
}

template <class V, class I>
int run_sddmm(const MatrixOptions& m, const RunOptions& r) {
  check_matrix_options(m);
  check_run_options(r);
  const MemorySpace space = parse_device(r.device);
  Context ctx;
  ctx.set_cpu_threads(r.threads);
  stage(source_text(m.input, m.generate));
  // Files come canonical from load_matrix (sorted rows, duplicates summed); generated ones are
  // sorted here too, so the check below can line entries up with the reference.
  const Csr<V, I> csr = m.input.empty() ? canonicalize(load_matrix<V, I>(m.input, m.generate))
                                        : load_matrix<V, I>(m.input, m.generate);
  require_host_memory(double(csr.rows + csr.cols) * sizeof(V) * double(r.features),
                      "X (" + std::to_string(csr.rows) + " x F) and Y (" + std::to_string(csr.cols) +
                          " x F) at F = " + std::to_string(r.features));
  stage("allocating X and Y");
  const Format format = parse_format(m.format);
  TSR_CHECK(space == MemorySpace::host || format == Format::csr || format == Format::coo,
            "--device cuda runs SDDMM on csr and coo (got ", m.format, ")");
  const DenseMatrix<V> x = uniform_dense<V>(csr.rows, r.features, 18);
  const DenseMatrix<V> y = uniform_dense<V>(csr.cols, r.features, 19);
  const DenseMatrix<V> xd = x.to(space), yd = y.to(space);
  stage("converting to " + m.format);
  const AnySparse<V, I> a = to_space(from_csr(csr, format, m.params()), space);
  stage("running sddmm");
  ops::SddmmOptions options;
  options.deterministic = r.deterministic;
  if (!r.schedule.empty()) {
    options.schedule = schedule::parse(schedule::Op::sddmm, r.schedule);
    TSR_CHECK(space == MemorySpace::device, "--schedule picks a device kernel; add --device cuda");
  }
  AnySparse<float, I> out;
  const double seconds =
      time_median(ctx, r.repeat, [&] { out = ops::sddmm(ctx, a, xd.view(), yd.view(), options); });
  const double gflops = ops::sddmm_flops(csr.nnz(), r.features) / seconds * 1e-9;
  const std::string ran = r.schedule.empty()
                              ? default_schedule_ran(ctx, schedule::Op::sddmm, a, xd.view(), yd.view(), r)
                              : r.schedule;
  std::printf("sddmm %s  %lldx%lld nnz=%lld F=%lld %s/%s %s%s%s  median %.3f ms  %.2f GFLOP/s\n",
              m.format.c_str(), (long long)csr.rows, (long long)csr.cols, (long long)csr.nnz(),
              (long long)r.features, m.dtype.c_str(), m.itype.c_str(), r.device.c_str(),
              ran.empty() ? "" : " ", ran.c_str(), seconds * 1e3, gflops);
  if (r.check) {
    const auto want = reference::sddmm(csr, x, y);
    std::vector<float> got;
    if (space == MemorySpace::device) {
      // A COO from CSR keeps CSR's entry order, so both line up with the reference.
      got = format == Format::coo ? std::get<Coo<float, I>>(out).values.to_vector()
                                  : std::get<Csr<float, I>>(out).values.to_vector();
    } else if (format == Format::bsr) {  // compare only A's entries, not the whole blocks
      const auto dense = reference::dense(to_csr(out));
      for (int64_t row = 0; row < csr.rows; ++row) {
        for (I e = csr.indptr[row]; e < csr.indptr[row + 1]; ++e) {
          got.push_back(float(dense[size_t(row * csr.cols + csr.indices[e])]));
        }
      }
    } else {
      got = to_csr(out).values.to_vector();
    }
    const double err = got.size() == want.size() ? reference::relative_error(got.data(), want) : INFINITY;
    const bool ok = err < 1e-4;
    std::printf("check: %s (relative error %.2e vs float64 reference)\n", ok ? "PASS" : "FAIL", err);
    if (!ok) return 2;
  }
  return 0;
}

// The main job on a built-in default: an R-MAT graph through every format, SpMM and SDDMM on
// each, checked against the float64 reference; the CUDA CSR kernels too when a GPU is present.
// `tessera bench spmm|spmm_formats|sddmm ARGS...`: runs the GPU harness beside this binary
// (<build>/bench/<op>_gpu), passing ARGS through; its exit status becomes ours.
int cmd_bench(const std::string& op, const std::vector<std::string>& args) {
  TSR_CHECK(op == "spmm" || op == "sddmm" || op == "spmm_formats", "bench: unknown benchmark '", op,
            "' (spmm, spmm_formats or sddmm)");
  TSR_CHECK(kCudaEnabled, "bench: this build of Tessera has no CUDA support; the GPU harnesses need it");
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  TSR_CHECK(!ec, "bench: cannot locate the tessera binary: ", ec.message());
  const std::filesystem::path harness = self.parent_path().parent_path() / "bench" / (op + "_gpu");
  TSR_CHECK(std::filesystem::exists(harness), "bench: ", harness.string(),
            " is missing; configure with -DTESSERA_BUILD_BENCH=ON and build it");
  std::vector<std::string> argv_strings{harness.string()};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_strings) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(stdout);
  // The harness reports a bad argument as our one error line (bench_common.h, parse_command_line).
  const std::string prefix = "tessera: error: bench " + op + ": ";
  TSR_CHECK(setenv("TESSERA_ERROR_PREFIX", prefix.c_str(), 1) == 0, "bench: cannot set the environment");
  execv(argv[0], argv.data());
  TSR_FAIL("bench: cannot run ", harness.string(), ": ", std::strerror(errno));
}

int cmd_demo(int scale, int64_t features) {
  using V = float;
  using I = int32_t;
  Context ctx;
  RmatParams p;
  p.scale = scale;
  // B, X, C and the float64 references: about 40 bytes a node per feature.
  require_host_memory(40.0 * double(int64_t(1) << scale) * double(features),
                      "the demo's dense operands at F = " + std::to_string(features));
  stage("generating the demo's R-MAT graph");
  WallTimer gen_timer;
  const Csr<V, I> csr = generate_rmat<V, I>(p, GenValues{42, false});
  std::printf("tessera demo: R-MAT scale %d (%lld nodes, %lld edges, generated in %.0f ms), F = %lld, "
              "f32 values, %d CPU threads\n\n",
              scale, (long long)csr.rows, (long long)csr.nnz(), gen_timer.seconds() * 1e3,
              (long long)features, omp_get_max_threads());
  stage("running the demo");
  const DenseMatrix<V> b = uniform_dense<V>(csr.cols, features, 1);
  const DenseMatrix<V> x = uniform_dense<V>(csr.rows, features, 2);
  const auto spmm_ref = reference::spmm(csr, b);
  const auto sddmm_ref = reference::sddmm(csr, x, b);
  std::printf("%-8s %-6s %12s %9s %10s %11s %9s %11s %9s\n", "format", "device", "stored",
              "padding", "convert", "spmm", "GFLOP/s", "sddmm", "check");
  int failures = 0;
  const ConvertParams params{4, 4, -1, HybParams{2, 5}};
  for (Format f : {Format::csr, Format::coo, Format::csc, Format::bsr, Format::ell, Format::ragged,
                   Format::hybrid}) {
    WallTimer t;
    const AnySparse<V, I> a = from_csr(csr, f, params);
    const double convert_ms = t.seconds() * 1e3;
    const FormatStats st = format_stats(a);
    DenseMatrix<float> c(csr.rows, features);
    const double spmm_s = time_median(ctx, 5, [&] { ops::spmm(ctx, a, b.view(), c.view()); });
    AnySparse<float, I> out;
    const double sddmm_s = time_median(ctx, 3, [&] { out = ops::sddmm(ctx, a, x.view(), b.view()); });
    double err = reference::relative_error(c.data(), spmm_ref);
    if (f != Format::bsr) {  // BSR's SDDMM fills whole blocks; its SpMM check covers the format
      const std::vector<float> got = to_csr(out).values.to_vector();
      err = std::max(err, reference::relative_error(got.data(), sddmm_ref));
    }
    const bool ok = err < 1e-4;
    failures += !ok;
    std::printf("%-8s %-6s %12lld %8.1f%% %8.1f ms %8.2f ms %9.2f %8.2f ms %9s\n", format_name(f),
                "cpu", (long long)st.stored, 100 * st.padding_ratio, convert_ms, spmm_s * 1e3,
                ops::spmm_flops(csr.nnz(), features) / spmm_s * 1e-9, sddmm_s * 1e3,
                ok ? "ok" : "FAIL");
  }
  if (device::available()) {
    const Csr<V, I> dcsr = csr.to(MemorySpace::device);
    const DenseMatrix<V> db = b.to(MemorySpace::device), dx = x.to(MemorySpace::device);
    DenseMatrix<float> dc(csr.rows, features, MemorySpace::device);
    Buffer<float> dout(size_t(csr.nnz()), MemorySpace::device);
    const double spmm_s = time_median(ctx, 20, [&] { ops::spmm(ctx, dcsr.view(), db.view(), dc.view()); });
    const double sddmm_s = time_median(ctx, 20, [&] {
      ops::sddmm(ctx, dcsr.view(), dx.view(), db.view(), dout.data());
    });
    const DenseMatrix<float> c = dc.to(MemorySpace::host);
    const std::vector<float> s = dout.to_vector();
    const double err = std::max(reference::relative_error(c.data(), spmm_ref),
                                reference::relative_error(s.data(), sddmm_ref));
    const bool ok = err < 1e-4;
    failures += !ok;
    std::printf("%-8s %-6s %12lld %8.1f%% %11s %8.3f ms %9.2f %8.3f ms %9s\n", "csr", "cuda",
                (long long)csr.nnz(), 0.0, "-", spmm_s * 1e3,
                ops::spmm_flops(csr.nnz(), features) / spmm_s * 1e-9, sddmm_s * 1e3,
                ok ? "ok" : "FAIL");
    // SpMM on the other device formats (BSR on tensor cores: tf32, checked at 4e-3).
    for (Format f : {Format::bsr, Format::ell, Format::hybrid}) {
      const AnySparse<V, I> host = from_csr(csr, f, params);
      const FormatStats st = format_stats(host);
      const AnySparse<V, I> a = to_space(host, MemorySpace::device);
      const double s = time_median(ctx, 20, [&] { ops::spmm(ctx, a, db.view(), dc.view()); });
      const DenseMatrix<float> got = dc.to(MemorySpace::host);
      const double e = reference::relative_error(got.data(), spmm_ref);
      const bool good = e < (f == Format::bsr ? 4e-3 : 1e-4);
      failures += !good;
      std::printf("%-8s %-6s %12lld %8.1f%% %11s %8.3f ms %9.2f %11s %9s\n", format_name(f), "cuda",
                  (long long)st.stored, 100 * st.padding_ratio, "-", s * 1e3,
                  ops::spmm_flops(csr.nnz(), features) / s * 1e-9, "-", good ? "ok" : "FAIL");
    }
  } else {
    std::printf("(no CUDA device%s: GPU rows skipped)\n", kCudaEnabled ? "" : " support in this build");
  }
  std::printf("\ncheck = SpMM and SDDMM against the float64 reference (relative error < 1e-4; "
              "4e-3 for BSR on the GPU's tensor cores, which round f32 to tf32)\n");
  return failures == 0 ? 0 : 2;
}

struct KmeansCliOptions {
  std::string input, generate, dtype = "f32", init = "kmeans++", metric = "l2", device = "cpu";
  int64_t k = 0, batch = 1;
  int iterations = 50, threads = 0;
  double tolerance = 1e-4;
  std::string seed = "0";  // parsed here: CLI11 would accept -1 (wrapped) and clamp 2^64
  bool check = false;
  bool stream = false;        // keep X on the host and stream it to the GPU in chunks
  bool exact_f32 = false;     // f32 on the GPU: distances at f32 precision (3xTF32), not tf32
  int64_t stream_chunk = 0;   // points per streamed chunk (0: N/16, capped by free GPU memory)
  std::string output;  // prefix for <output>.centroids.npy [B*K, D] and <output>.labels.npy [B*N, 1]
};

// Fails on the first coordinate of `points` that is NaN or Inf, that `V` cannot hold, or that
// would overflow the f32 squared distances (|x| past sqrt(FLT_MAX / D) / 2), naming its source.
template <class V>
void check_point_range(const DenseMatrix<float>& points, const std::string& source) {
  const int64_t d = points.cols();
  const double limit = std::sqrt(double(FLT_MAX) / double(std::max<int64_t>(d, 1))) / 2;
  for (int64_t i = 0; i < points.rows(); ++i) {
    for (int64_t j = 0; j < d; ++j) {
      const float x = points(i, j);
      TSR_CHECK(std::isfinite(x), source, ": point ", i, " coordinate ", j, " is ", x,
                "; points must be finite");
      TSR_CHECK(std::isfinite(to_float(from_float<V>(x))), source, ": point ", i, " coordinate ", j,
                " = ", x, " overflows ", dtype_name(dtype_of<V>()), " (largest finite ",
                std::is_same_v<V, f16> ? 65504.0 : std::is_same_v<V, bf16> ? 3.3895313892515355e38
                                                                           : double(FLT_MAX),
                ")");
      TSR_CHECK(std::fabs(x) <= limit, source, ": point ", i, " coordinate ", j, " = ", x,
                " is too large: squared distances over ", d, " dimensions overflow f32 past |x| = ",
                limit, "; scale the data");
    }
  }
}

template <class V>
int run_kmeans(const KmeansCliOptions& c) {
  check_threads(c.threads);
  TSR_CHECK(c.k >= 1, "--clusters ", c.k, " must be positive");
  TSR_CHECK(c.iterations >= 0, "--iterations ", c.iterations, " must be >= 0");
  TSR_CHECK(std::isfinite(c.tolerance) && c.tolerance >= 0, "--tolerance ", c.tolerance,
            " must be a finite number >= 0");
  uint64_t seed = 0;
  // Decimal digits, optionally after one '+' (from_chars takes no sign for unsigned types).
  const char* seed_text = c.seed.data() + (c.seed.size() > 1 && c.seed[0] == '+' ? 1 : 0);
  const char* seed_text_end = c.seed.data() + c.seed.size();
  const auto [seed_end, seed_error] = std::from_chars(seed_text, seed_text_end, seed);
  TSR_CHECK(seed_error == std::errc() && seed_end == seed_text_end, "--seed '", c.seed,
            "' must be an integer in [0, 2^64)");
  TSR_CHECK(c.stream_chunk >= 0, "--stream-chunk ", c.stream_chunk, " must be >= 0 (0: automatic)");
  if (!c.output.empty()) {  // both destinations checked before any work
    output_destination(c.output + ".centroids.npy", "kmeans --output");
    output_destination(c.output + ".labels.npy", "kmeans --output");
  }
  stage(source_text(c.input, c.generate));
  const DenseMatrix<float> points = load_points(c.input, c.generate);
  TSR_CHECK(c.batch >= 1 && points.rows() % c.batch == 0, "--batch ", c.batch, " must divide the ",
            points.rows(), " points into equal problems");
  check_point_range<V>(points, c.input.empty() ? "'" + c.generate + "'" : c.input);
  stage("running kmeans");
  DenseMatrix<V> x(points.rows(), points.cols());
  for (int64_t i = 0; i < points.rows() * points.cols(); ++i) x.data()[i] = from_float<V>(points.data()[i]);
  const int64_t n = points.rows() / c.batch;
  const BatchedDenseView<const V> batch = contiguous_batch<const V>(x.data(), c.batch, n, points.cols());
  TSR_CHECK(c.device == "cpu" || c.device == "cuda", "--device must be cpu or cuda, not '", c.device, "'");
  const bool gpu = c.device == "cuda";
  TSR_CHECK(!c.stream || gpu, "--stream needs --device cuda (it streams host points to the GPU)");
  TSR_CHECK(!c.exact_f32 || (gpu && std::is_same_v<V, float>),
            "--exact-f32 needs --device cuda and --dtype f32 (the CPU computes in f32 already; "
            "16-bit points multiply exactly)");
  ops::KmeansOptions o;
  o.gpu_streaming = c.stream;
  o.stream_chunk_points = c.stream_chunk;
  o.max_iterations = c.iterations;
  o.tolerance = c.tolerance;
  o.init = ops::parse_kmeans_init(c.init);
  o.metric = ops::parse_kmeans_metric(c.metric);
  o.seed = seed;
  o.threads = c.threads;
  o.exact_f32 = c.exact_f32;
  Context ctx;
  Buffer<V> on_device;
  BatchedDenseView<const V> input = batch;
  if (gpu && !c.stream) {  // the points go to the GPU first (not timed); the results come back after
    on_device = x.buffer().to(MemorySpace::device);
    input = contiguous_batch<const V>(on_device.data(), c.batch, n, points.cols(), MemorySpace::device);
  }
  WallTimer t;
  ops::KmeansResult r = ops::kmeans<V>(ctx, input, c.k, o);
  const double seconds = t.seconds();
  if (gpu && !c.stream) {  // streamed fits return host results already
    r.centroids = r.centroids.to(MemorySpace::host);
    r.labels = r.labels.to(MemorySpace::host);
  }
  double inertia = 0;
  for (double v : r.inertia) inertia += v;
  TSR_CHECK(std::isfinite(inertia), "kmeans: the inertia is ", inertia,
            " (not finite); the distances overflowed");
  std::printf("kmeans  B=%lld N=%lld D=%lld K=%lld %s %s init=%s %s  iterations %d  inertia %.6g  "
              "%.1f ms (%.2f ms per iteration)\n",
              (long long)c.batch, (long long)n, (long long)points.cols(), (long long)c.k, c.dtype.c_str(),
              c.metric.c_str(), c.init.c_str(), c.device.c_str(), r.iterations, inertia, seconds * 1e3,
              seconds * 1e3 / std::max(1, r.iterations));
  if (!c.output.empty()) {
    // Both files are written under new names beside their destinations, then renamed into place
    // together: a failed write (a full disk) leaves the old pair whole.
    stage("writing " + c.output + ".*.npy");
    const int64_t d = points.cols();
    const std::string centroids = output_destination(c.output + ".centroids.npy", "kmeans --output");
    const std::string labels = output_destination(c.output + ".labels.npy", "kmeans --output");
    const std::string suffix = ".new." + std::to_string(::getpid());
    try {
      write_npy<float>(centroids + suffix,
                       DenseView<const float>{c.batch * c.k, d, d, r.centroids.data(), MemorySpace::host});
      write_npy<int32_t>(labels + suffix,
                         DenseView<const int32_t>{c.batch * n, 1, 1, r.labels.data(), MemorySpace::host});
    } catch (...) {
      std::remove((centroids + suffix).c_str());
      std::remove((labels + suffix).c_str());
      throw;
    }
    for (const std::string& path : {centroids, labels}) {
      struct stat old {};  // a replaced file keeps its permission bits
      if (::stat(path.c_str(), &old) == 0) ::chmod((path + suffix).c_str(), old.st_mode & 07777);
      TSR_CHECK(std::rename((path + suffix).c_str(), path.c_str()) == 0,
                "kmeans --output: cannot rename ", path + suffix, " to ", path, ": ",
                std::strerror(errno));
    }
    std::printf("wrote %s.centroids.npy and %s.labels.npy\n", c.output.c_str(), c.output.c_str());
  }
  if (!c.check) return 0;
  int64_t failures = 0, near_ties = 0, rising = 0, checked = 0;
  // The GPU computes distances on tensor cores: f32 as tf32 (f32 precision with --exact-f32),
  // 16-bit centroids rounded to the input type. Ties and the inertia's monotonicity are judged
  // at that rounding. (exact_f32 implies f32 points: checked above.)
  const bool f32_precision = !gpu || c.exact_f32;
  const double rounding = f32_precision ? 0.0 : reference::tensor_core_rounding<V>();
  // At most ~2e9 reference multiply-adds a problem: every point of a small one, a stride of a big one.
  const int64_t stride = std::max<int64_t>(1, n * c.k * points.cols() / 2000000000);
  for (int64_t b = 0; b < c.batch; ++b) {
    const reference::LabelCheck lc =
        reference::check_labels(batch[b], r.centroids.data() + b * c.k * points.cols(), c.k,
                                o.metric, r.labels.data() + b * n, stride, rounding);
    failures += lc.failures, near_ties += lc.near_ties, checked += lc.checked;
    const std::vector<double>& h = r.inertia_history[size_t(b)];
    for (size_t i = 1; i < h.size() && o.metric != ops::KmeansMetric::inner_product; ++i) {
      rising += h[i] > h[i - 1] * (1 + std::max(1e-6, 4 * rounding));
    }
  }
  const bool pass = failures == 0 && rising == 0;
  std::printf("check: %s (labels of %lld points vs the float64 reference: %lld differ beyond rounding, "
              "%lld near-ties; inertia rose %lld times)\n",
              pass ? "PASS" : "FAIL", (long long)checked, (long long)failures, (long long)near_ties,
              (long long)rising);
  return pass ? 0 : 2;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tessera: sparse and graph tensor compute engine"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "help for every subcommand");

  auto* info = app.add_subcommand("info", "build configuration, CUDA and devices");

  MatrixOptions conv_m;
  std::string conv_out;
  bool conv_json = false;
  auto* convert = app.add_subcommand("convert", "load or generate a matrix, convert it, print statistics");
  add_matrix_options(convert, conv_m);
  convert->add_option("-o,--output", conv_out, "also write the matrix (CSR) as Matrix Market");
  convert->add_flag("--json", conv_json, "statistics as JSON lines");

  MatrixOptions spmm_m, sddmm_m;
  RunOptions spmm_r, sddmm_r;
  auto* spmm = app.add_subcommand("spmm", "C = A * B for a sparse A and random dense B; time and check");
  add_matrix_options(spmm, spmm_m);
  add_run_options(spmm, spmm_r);
  spmm->add_option("--reduce", spmm_r.reduce,
                   "how a row's products meet: sum (SpMM) | max | min | mean (GNN aggregations; "
                   "CSR only for now, on the host or the GPU)")
      ->capture_default_str();
  auto* sddmm = app.add_subcommand("sddmm", "out = (X Y^T) sampled on A's pattern; time and check");
  add_matrix_options(sddmm, sddmm_m);
  add_run_options(sddmm, sddmm_r);

  KmeansCliOptions km;
  auto* kmeans = app.add_subcommand("kmeans", "cluster points (.fvecs/.npy or generated) with k-means; time and check");
  kmeans->add_option("-i,--input", km.input, ".fvecs or .npy file of points (rows)");
  kmeans->add_option("-g,--generate", km.generate, "blobs:n=,d=,centers=,spread=,seed= or uniform:n=,d=,seed=");
  kmeans->add_option("-k,--clusters", km.k, "clusters per problem")->required();
  kmeans->add_option("--batch", km.batch, "split the points into this many equal problems")->capture_default_str();
  kmeans->add_option("--iterations", km.iterations, "centroid updates at most")->capture_default_str();
  kmeans->add_option("--tolerance", km.tolerance, "stop when the inertia falls by less than this fraction")
      ->capture_default_str();
  kmeans->add_option("--init", km.init, "kmeans++ or random")->capture_default_str();
  kmeans->add_option("--metric", km.metric, "l2, cosine or ip")->capture_default_str();
  kmeans->add_option("--seed", km.seed, "random seed")->capture_default_str();
  kmeans->add_option("--dtype", km.dtype, "f32, bf16 or f16 (points are rounded to it)")->capture_default_str();
  kmeans->add_option("--threads", km.threads, "CPU threads (0: OpenMP default)");
  kmeans->add_option("--device", km.device, "cpu or cuda")->capture_default_str();
  kmeans->add_flag("--stream", km.stream,
                   "with --device cuda: keep the points in host memory and stream them to the GPU in "
                   "chunks every iteration (data larger than GPU memory)");
  kmeans->add_option("--stream-chunk", km.stream_chunk, "points per streamed chunk (0: N/16, at least 65536, at most a quarter of free GPU memory)");
  kmeans->add_flag("--exact-f32", km.exact_f32,
                   "with --device cuda and --dtype f32: distances at f32 precision (3xTF32, three "
                   "times the tensor-core work) instead of tf32");
  kmeans->add_flag("--check", km.check, "labels against a float64 reference; inertia never rises");
  kmeans->add_option("-o,--output", km.output, "write <prefix>.centroids.npy and <prefix>.labels.npy");

  std::string bench_op;
  auto* bench = app.add_subcommand("bench", "GPU benchmark against cuSPARSE: runs bench/<op>_gpu "
                                            "(spmm, spmm_formats: BSR and Hybrid, sddmm) with the "
                                            "remaining arguments (--quick, --only NAME,..., "
                                            "--features 32,128, --out DIR)");
  bench->add_option("op", bench_op, "spmm, spmm_formats or sddmm")->required();
  // Everything after the op goes to the harness untouched and in order (remaining(); a
  // positional list here would take only the values and drop the option names).
  bench->prefix_command();

  int demo_scale = 14;
  int64_t demo_features = 32;
  auto* demo = app.add_subcommand("demo", "the main job on a built-in R-MAT graph");
  demo->add_option("--scale", demo_scale, "R-MAT scale (2^scale nodes)")->capture_default_str();
  demo->add_option("-F,--features", demo_features, "feature width")->capture_default_str();

  // CLI11 would only say that a subcommand is required, for an unknown command and for an option
  // before the command alike (the top level takes only --help and --help-all).
  if (argc > 1 && argv[1][0] == '-') {
    const std::string first = argv[1];
    if (first != "-h" && first != "--help" && first != "--help-all") {
      std::fprintf(stderr,
                   "tessera: error: unknown option '%s' before the command (the command comes first: "
                   "info, convert, spmm, sddmm, kmeans, bench or demo)\n",
                   printable(first).c_str());
      return 2;
    }
  }
  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands({})) known = known || sub->check_name(argv[1]);
    if (!known) {
      std::fprintf(stderr,
                   "tessera: error: unknown command '%s' (info, convert, spmm, sddmm, kmeans, "
                   "bench or demo)\n",
                   printable(argv[1]).c_str());
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --help-all
    // CLI11's own message, as one line like every other error.
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    std::fprintf(stderr, "tessera: error: %s (see tessera --help)\n", printable(what).c_str());
    return e.get_exit_code();
  }
  try {
    // An option given with an empty value would otherwise read as not given at all.
    for (CLI::App* sub : {convert, spmm, sddmm, kmeans}) {
      for (const char* name : {"--schedule", "--output", "--input", "--generate"}) {
        const CLI::Option* o = sub->get_option_no_throw(name);
        TSR_CHECK(o == nullptr || o->count() == 0 || !o->results().front().empty(), sub->get_name(),
                  ": ", name, " was given an empty value");
      }
    }
    if (*info) return cmd_info();
    if (*convert) return cmd_convert(conv_m, conv_out, conv_json);
    if (*spmm) {
      return with_types<false>(spmm_m.dtype, spmm_m.itype, [&](auto v, auto i) {
        return run_spmm<decltype(v), decltype(i)>(spmm_m, spmm_r);
      });
    }
    if (*sddmm) {
      return with_types<false>(sddmm_m.dtype, sddmm_m.itype, [&](auto v, auto i) {
        return run_sddmm<decltype(v), decltype(i)>(sddmm_m, sddmm_r);
      });
    }
    if (*kmeans) {
      if (km.dtype == "f32") return run_kmeans<float>(km);
      if (km.dtype == "bf16") return run_kmeans<bf16>(km);
      if (km.dtype == "f16") return run_kmeans<f16>(km);
      TSR_FAIL("unknown value type '", km.dtype, "' (f32, bf16 or f16)");
    }
    if (*bench) return cmd_bench(bench_op, bench->remaining());
    if (*demo) {
      TSR_CHECK(demo_scale >= 1 && demo_scale <= 24, "--scale must be in [1, 24] (got ", demo_scale, ")");
      TSR_CHECK(demo_features >= 1, "--features must be positive");
      return cmd_demo(demo_scale, demo_features);
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "tessera: error: %s\n", printable(e.reason()).c_str());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "tessera: error: out of memory while %s\n", printable(g_stage).c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tessera: error: %s (while %s)\n", printable(e.what()).c_str(),
                 printable(g_stage).c_str());
    return 1;
  }
  return 0;
}

}  // namespace tessera::cli

int main(int argc, char** argv) { return tessera::cli::main(argc, argv); }
