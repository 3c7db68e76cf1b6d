// GPU k-means benchmark, Tessera's side: the shapes (batched, large, SVG2-like
// warm-started steps) timed with CUDA events; bench/kmeans_gpu_peers.py times flash-kmeans and a
// PyTorch Lloyd iteration on the same shapes and scripts/merge_kmeans.py joins the two into
// bench/results/<device>/kmeans.json. Per case:
//   step     seconds per Lloyd iteration: (T(1 + m iterations) - T(1 iteration)) / m, each T the
//            median of whole fixed-iteration calls from the same centroids
//   run      seconds per call of `iters` fixed iterations (the SVG2 cases: 2, warm-started)
//            without the final assignment: `iters` assignments and updates, the peers' work;
//            run_final_s: the same call with it (the default: labels of the returned centroids)
//   init     the default initialisation's time (k-means|| on the GPU) and its inertia
//   stages   the assignment's and the update's median seconds per iteration (profiled run), the
//            assignment's share of the tensor-core peak (useful 2BNKD flops) and the update's
//            share of the measured copy bandwidth (reading X once, labels, writing centroids)
// --exact-f32: the f32 cases with KmeansOptions::exact_f32 (3xTF32: three times the MMAs; the
// peak fraction still counts useful flops against the tf32 peak). Peers at the same precision:
// flash-kmeans under TRITON_F32_DEFAULT=tf32x3, PyTorch without TF32 (its default here).
// Data: standard normal points (a counter-based generator, the same distribution the peers draw
// with torch.randn), initial centroids K distinct random points of each problem.
#include <cuda_runtime_api.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/gpu_harness.h"
#include "core/device.h"
#include "core/timer.h"
#include "ops/kmeans/kmeans.h"

namespace {

using namespace tessera;
using ops::KmeansInit;
using ops::KmeansOptions;

struct Case {
  std::string name;
  int64_t batch, n, k, d;
  std::string dtype;  // fp32, bf16, fp16 (the peers' names)
  int iters;          // per run
  bool svg2;          // warm-started 2-iteration step
};

const std::vector<Case> kFullCases = {
    {"b32_n131072_k1000_d128_fp16", 32, 131072, 1000, 128, "fp16", 5, false},
    {"b32_n16384_k100_d128_fp16", 32, 16384, 100, 128, "fp16", 5, false},
    {"b1_n1048576_k1024_d128_fp32", 1, 1048576, 1024, 128, "fp32", 5, false},
    {"b1_n1048576_k1024_d128_bf16", 1, 1048576, 1024, 128, "bf16", 5, false},
    {"b1_n1048576_k8192_d128_fp16", 1, 1048576, 8192, 128, "fp16", 5, false},
    {"b1_n8388608_k1024_d128_fp16", 1, 8388608, 1024, 128, "fp16", 5, false},
    {"svg2_b40_n75600_k300_d128_bf16", 40, 75600, 300, 128, "bf16", 2, true},
    {"svg2_b40_n75600_k1000_d128_bf16", 40, 75600, 1000, 128, "bf16", 2, true},
};
const std::vector<Case> kQuickCases = {
    {"quick_b4_n4096_k64_d64_fp32", 4, 4096, 64, 64, "fp32", 5, false},
    {"quick_b1_n16384_k128_d128_fp16", 1, 16384, 128, 128, "fp16", 5, false},
    {"quick_b2_n8192_k100_d128_bf16", 2, 8192, 100, 128, "bf16", 5, false},
    {"quick_svg2_b4_n3000_k30_d128_bf16", 4, 3000, 30, 128, "bf16", 2, true},
};

// Standard normal value number i of a stream (splitmix64 + Box-Muller): any thread, any order.
float normal_at(uint64_t seed, uint64_t i) {
  auto mix = [](uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  const uint64_t a = mix(seed * 0x632be59bd9b4e019ull + 2 * i), b = mix(seed + 2 * i + 1);
  const double u1 = (double(a >> 11) + 0.5) * 0x1.0p-53, u2 = double(b >> 11) * 0x1.0p-53;
  return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
}

// Dense tensor-core peak (FLOP/s) of the device for the dtype: H100/H200 SXM figures from
// NVIDIA's data sheet (bf16/fp16 989.4 TFLOPS, tf32 494.7); 0 when the device is not one of them.
double tensor_core_peak(const std::string& device, const std::string& dtype) {
  if (device.find("H100") == std::string::npos && device.find("H200") == std::string::npos) return 0;
  return (dtype == "fp32" ? 494.7 : 989.4) * 1e12;
}

template <class V>
nlohmann::ordered_json run_case(Context& ctx, bench::Timer& timer, const Case& c, int reps,
                                int step_extra, double copy_gbps, const std::string& device,
                                bool exact_f32) {
  const int64_t total = c.batch * c.n * c.d;
  std::vector<V> host(static_cast<size_t>(total));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < total; ++i) host[size_t(i)] = from_float<V>(normal_at(7, uint64_t(i)));
  const Buffer<V> x_dev(host, MemorySpace::device);
  std::vector<V>().swap(host);
  const auto x = contiguous_batch<const V>(x_dev.data(), c.batch, c.n, c.d, MemorySpace::device);

  KmeansOptions o;
  o.init = KmeansInit::random;
  o.seed = 1;
  o.max_iterations = 0;
  o.exact_f32 = exact_f32;
  std::vector<float> c0 = ops::kmeans(ctx, x, c.k, o).centroids.to_vector();
  o.init = KmeansInit::given;
  o.fixed_iterations = true;
  if (c.svg2) {  // the previous diffusion step's centroids: three untimed iterations
    o.initial_centroids = contiguous_batch<const float>(c0.data(), c.batch, c.k, c.d);
    o.max_iterations = 3;
    c0 = ops::kmeans(ctx, x, c.k, o).centroids.to_vector();
  }
  // On the device, as the peers hold theirs (and as a warm start from KMeans keeps them).
  const Buffer<float> c0_dev(c0, MemorySpace::device);
  o.initial_centroids =
      contiguous_batch<const float>(c0_dev.data(), c.batch, c.k, c.d, MemorySpace::device);
  ops::KmeansResult held;  // repeated fits into one result allocate nothing (as a KMeans does)
  auto fit_ms = [&](int iters) {
    o.max_iterations = iters;
    return timer.median_ms([&] { ops::kmeans(ctx, x, c.k, o, held); }, reps, 1);
  };
  const double t1 = fit_ms(1), tm = fit_ms(1 + step_extra), run_final = fit_ms(c.iters);
  o.final_assignment = false;
  const double run = fit_ms(c.iters);
  o.final_assignment = true;
  // The default initialisation (k-means|| on the GPU): one timed call, no iterations.
  KmeansOptions po;
  po.init = KmeansInit::kmeans_plus_plus;
  po.max_iterations = 0;
  po.seed = 1;
  po.exact_f32 = exact_f32;  // the seeding itself stays tf32; its final assignment does not
  double plus_inertia = 0;
  const double init_ms = timer.median_ms([&] {
    const ops::KmeansResult r = ops::kmeans(ctx, x, c.k, po);
    plus_inertia = 0;
    for (double v : r.inertia) plus_inertia += v;
  }, 1, 0);
  o.max_iterations = c.iters;
  o.profile_stages = true;
  const ops::KmeansResult prof = ops::kmeans(ctx, x, c.k, o);
  o.profile_stages = false;
  double inertia = 0;
  for (double v : prof.inertia) inertia += v;

  const double step_s = (tm - t1) * 1e-3 / step_extra;
  const double flops = 2.0 * double(c.batch) * c.n * c.k * c.d;
  const double update_bytes = double(c.batch) * c.n * (c.d * sizeof(V) + 4) +
                              double(c.batch) * c.k * c.d * 4;
  const double peak = tensor_core_peak(device, c.dtype);
  nlohmann::ordered_json j;
  j["name"] = c.name;
  j["shape"] = {{"B", c.batch}, {"N", c.n}, {"K", c.k}, {"D", c.d}};
  j["dtype"] = c.dtype;
  j["exact_f32"] = exact_f32 && c.dtype == "fp32";
  j["iters_per_run"] = c.iters;
  j["warm_start"] = c.svg2;
  j["step_s"] = step_s;
  j["run_s"] = run * 1e-3;
  j["run_s_per_iter"] = run * 1e-3 / c.iters;
  j["run_final_s"] = run_final * 1e-3;
  j["one_iteration_call_s"] = t1 * 1e-3;
  j["assign_s"] = prof.assign_seconds;
  j["update_s"] = prof.update_seconds;
  j["assign_tflops"] = flops / prof.assign_seconds * 1e-12;
  j["assign_fraction_of_tensor_core_peak"] = peak > 0 ? flops / prof.assign_seconds / peak : 0.0;
  j["update_gbps"] = update_bytes / prof.update_seconds * 1e-9;
  j["update_fraction_of_copy_bandwidth"] = update_bytes / prof.update_seconds * 1e-9 / copy_gbps;
  j["inertia_per_point"] = inertia / double(c.batch * c.n);
  j["kmeans_parallel_init_s"] = init_ms * 1e-3;
  j["kmeans_parallel_init_inertia_per_point"] = plus_inertia / double(c.batch * c.n);
  std::printf("%-34s step %8.3f ms  run(%d) %8.3f ms  assign %7.3f ms (%5.1f TFLOP/s, %4.1f%% peak)  "
              "update %7.3f ms (%4.0f GB/s)\n",
              c.name.c_str(), step_s * 1e3, c.iters, run, prof.assign_seconds * 1e3,
              flops / prof.assign_seconds * 1e-12,
              100 * (peak > 0 ? flops / prof.assign_seconds / peak : 0.0),
              prof.update_seconds * 1e3, update_bytes / prof.update_seconds * 1e-9);
  std::fflush(stdout);
  return j;
}

// Streaming (KmeansOptions::gpu_streaming): X stays in host memory and every pass copies it to
// the GPU in chunks on a second stream while the kernels run. The harness pins X once for the
// case, as a caller streaming the same data call after call would (the fit then finds it pinned
// and leaves it so); pinned per call, its hundreds of milliseconds varied enough to blur the step
// difference. Per Lloyd iteration (the step difference of whole calls): streamed with 16 chunks and
// with the default chunk size, the same problem resident on the GPU, and the copy floor (X's
// bytes at the measured pinned host-to-device bandwidth). overlap = (resident + floor) / streamed:
// 1 when copies and kernels run one after the other, up to (resident + floor) / max(resident,
// floor) when they overlap fully.
template <class V>
nlohmann::ordered_json run_stream_case(Context& ctx, const Case& c, int reps, int step_extra) {
  const int64_t total = c.batch * c.n * c.d;
  std::vector<V> host(static_cast<size_t>(total));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < total; ++i) host[size_t(i)] = from_float<V>(normal_at(7, uint64_t(i)));
  const auto x_host = contiguous_batch<const V>(host.data(), c.batch, c.n, c.d);
  struct PinnedForTheCase {
    void* p;
    bool on;
    PinnedForTheCase(void* data, size_t bytes)
        : p(data), on(cudaHostRegister(data, bytes, cudaHostRegisterDefault) == cudaSuccess) {
      if (!on) cudaGetLastError();  // then every fit pins it itself, as without the harness
    }
    ~PinnedForTheCase() {
      if (on) cudaHostUnregister(p);
    }
  } pinned_x(host.data(), host.size() * sizeof(V));
  std::vector<float> c0(size_t(c.batch * c.k * c.d));  // K evenly spaced points of each problem
  for (int64_t b = 0; b < c.batch; ++b) {
    for (int64_t j = 0; j < c.k; ++j) {
      const int64_t row = b * c.n + j * (c.n / c.k);
      for (int64_t f = 0; f < c.d; ++f) c0[size_t((b * c.k + j) * c.d + f)] = to_float(host[size_t(row * c.d + f)]);
    }
  }
  KmeansOptions o;
  o.init = KmeansInit::given;
  o.initial_centroids = contiguous_batch<const float>(c0.data(), c.batch, c.k, c.d);
  o.fixed_iterations = true;
  o.final_assignment = false;
  const auto median_s = [&](const auto& x, int iters) {
    o.max_iterations = iters;
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
      WallTimer w;
      ops::kmeans(ctx, x, c.k, o);
      ctx.synchronize();
      t.push_back(w.seconds());
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  };
  const auto step = [&](const auto& x) { return (median_s(x, 1 + step_extra) - median_s(x, 1)) / step_extra; };
  o.gpu_streaming = true;
  o.stream_chunk_points = c.batch * c.n / 16;
  const double streamed16 = step(x_host);
  o.stream_chunk_points = 0;
  const double streamed_default = step(x_host);
  o.gpu_streaming = false;
  double resident = 0;
  {
    const Buffer<V> x_dev(host, MemorySpace::device);
    resident = step(contiguous_batch<const V>(x_dev.data(), c.batch, c.n, c.d, MemorySpace::device));
  }
  // Pinned host-to-device bandwidth: 1 GiB, median of 5 copies.
  const size_t bytes = size_t(1) << 30;
  void* pinned = nullptr;
  TSR_CUDA_CHECK(cudaMallocHost(&pinned, bytes));
  Buffer<uint8_t> dst(bytes, MemorySpace::device);
  std::vector<double> copy_s;
  for (int r = 0; r < 5; ++r) {
    WallTimer w;
    TSR_CUDA_CHECK(cudaMemcpy(dst.data(), pinned, bytes, cudaMemcpyHostToDevice));
    copy_s.push_back(w.seconds());
  }
  TSR_CUDA_CHECK(cudaFreeHost(pinned));
  std::sort(copy_s.begin(), copy_s.end());
  const double h2d_gbps = double(bytes) / copy_s[2] * 1e-9;
  const double floor_s = double(total) * sizeof(V) / (h2d_gbps * 1e9);
  nlohmann::ordered_json j;
  j["name"] = c.name;
  j["shape"] = {{"B", c.batch}, {"N", c.n}, {"K", c.k}, {"D", c.d}};
  j["dtype"] = c.dtype;
  j["x_bytes"] = double(total) * sizeof(V);
  j["x_pinned_by_harness"] = pinned_x.on;
  j["streamed_16_chunks_s_per_iter"] = streamed16;
  j["streamed_default_chunks_s_per_iter"] = streamed_default;
  j["resident_s_per_iter"] = resident;
  j["h2d_gbps_pinned"] = h2d_gbps;
  j["copy_floor_s_per_iter"] = floor_s;
  j["overlap_16_chunks"] = (resident + floor_s) / streamed16;
  j["overlap_best_possible"] = (resident + floor_s) / std::max(resident, floor_s);
  j["streamed_16_chunks_vs_copy_floor"] = floor_s / streamed16;
  std::printf("%-34s streamed %8.2f ms/iter (16 chunks), %8.2f (default chunks); resident %7.2f; "
              "copy floor %7.2f (%.1f GB/s); overlap %.2f of %.2f possible\n",
              c.name.c_str(), streamed16 * 1e3, streamed_default * 1e3, resident * 1e3, floor_s * 1e3,
              h2d_gbps, (resident + floor_s) / streamed16, (resident + floor_s) / std::max(resident, floor_s));
  std::fflush(stdout);
  return j;
}

const std::vector<Case> kStreamCases = {
    {"stream_b1_n16777216_k1024_d128_fp16", 1, 16777216, 1024, 128, "fp16", 0, false},
    {"stream_b1_n4194304_k1024_d128_fp32", 1, 4194304, 1024, 128, "fp32", 0, false},
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"GPU k-means benchmark (Tessera's side; peers: bench/kmeans_gpu_peers.py)"};
  bool quick = false;
  std::vector<std::string> only;
  std::string out = "bench/results/kmeans_ours.json";
  int reps = 10, step_extra = 10;
  app.add_flag("--quick", quick, "small shapes only (a smoke run)");
  app.add_option("--only", only, "case names to run")->delimiter(',');
  auto* out_option = app.add_option("--out", out, "output JSON file");
  app.add_option("--reps", reps, "timed calls per measurement (median)");
  app.add_option("--step-extra", step_extra, "extra iterations m in the step difference");
  bool exact_f32 = false;
  app.add_flag("--exact-f32", exact_f32,
               "f32 cases at f32 precision (KmeansOptions::exact_f32) instead of tf32");
  bool stream = false;
  app.add_flag("--stream", stream,
               "the streaming cases instead (X in host memory, copied every pass; --quick ignored; "
               "default output bench/results/kmeans_stream.json)");
  if (const int code = bench::parse_command_line(app, argc, argv); code >= 0) return code;
  if (stream && exact_f32) {
    std::fprintf(stderr, "kmeans_gpu: --exact-f32 applies to the in-memory cases, not --stream\n");
    return 1;
  }
  const bool out_given = out_option->count() > 0;
  try {
    if (!device::available()) {
      std::fprintf(stderr, "kmeans_gpu: no CUDA device\n");
      return 1;
    }
    Context ctx;
    bench::Timer timer(ctx);
    const std::string device_name = device::name();
    const double copy_gbps = timer.copy_gbps(size_t(1) << 30);
    nlohmann::ordered_json doc;
    doc["summary"] = {{"device", device_name},
                      {"commit", bench::git_commit()},
                      {"date", bench::utc_now()},
                      {"copy_gbps", copy_gbps},
                      {"reps", reps},
                      {"step_extra_iterations", step_extra},
                      {"exact_f32", exact_f32}};
    doc["cases"] = nlohmann::ordered_json::array();
    if (stream) {
      if (!out_given) out = "bench/results/kmeans_stream.json";  // not the in-memory cases' file
      for (const Case& c : kStreamCases) {
        if (!only.empty() && std::find(only.begin(), only.end(), c.name) == only.end()) continue;
        try {
          doc["cases"].push_back(c.dtype == "fp32" ? run_stream_case<float>(ctx, c, reps, step_extra)
                                                   : run_stream_case<f16>(ctx, c, reps, step_extra));
        } catch (const std::exception& e) {
          std::fprintf(stderr, "%s: %s\n", c.name.c_str(), e.what());
          doc["cases"].push_back({{"name", c.name}, {"status", "error"}, {"error", e.what()}});
        }
        std::ofstream(out) << doc.dump(2) << "\n";
      }
      std::printf("wrote %s\n", out.c_str());
      return 0;
    }
    for (const Case& c : quick ? kQuickCases : kFullCases) {
      if (!only.empty() && std::find(only.begin(), only.end(), c.name) == only.end()) continue;
      try {
        if (c.dtype == "fp32") {
          doc["cases"].push_back(run_case<float>(ctx, timer, c, reps, step_extra, copy_gbps, device_name,
                                                 exact_f32));
        } else if (c.dtype == "bf16") {
          doc["cases"].push_back(run_case<bf16>(ctx, timer, c, reps, step_extra, copy_gbps, device_name,
                                                 exact_f32));
        } else {
          doc["cases"].push_back(run_case<f16>(ctx, timer, c, reps, step_extra, copy_gbps, device_name,
                                                 exact_f32));
        }
      } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", c.name.c_str(), e.what());
        doc["cases"].push_back({{"name", c.name}, {"status", "error"}, {"error", e.what()}});
      }
      std::ofstream(out) << doc.dump(2) << "\n";
    }
    std::ofstream(out) << doc.dump(2) << "\n";
    std::printf("wrote %s\n", out.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kmeans_gpu: %s\n", e.what());
    return 1;
  }
  return 0;
}
