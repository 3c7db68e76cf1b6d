// Shared pieces of the GPU benchmark harnesses (spmm_gpu, sddmm_gpu): the matrix suite, CUDA-event
// timing with an L2 flush before every run, the byte floors' bandwidth, error checks, and the
// summary fields every results file carries (DESIGN.md, "How performance is measured").
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/bench_common.h"
#include "core/buffer.h"
#include "core/context.h"
#include "core/cuda_check.h"
#include "formats/convert.h"
#include "formats/generators.h"
#include "formats/io.h"

namespace tessera::bench {

struct Matrix {
  std::string name;
  Csr<float, int32_t> csr;
  bool large = false;  // a generated graph (the bf16 comparison runs on these)
};

inline Csr<float, int32_t> rmat(int scale, double edge_factor, bool locality, uint64_t seed) {
  RmatParams p;
  p.scale = scale;
  p.edge_factor = edge_factor;
  p.permute_vertices = !locality;  // R-MAT's recursion keeps neighbours close; permuting breaks it
  return generate_rmat<float, int32_t>(p, GenValues{seed, false});
}

/// The suite: SuiteSparse files and Cora when present under data_dir, then R-MAT graphs shaped
/// like ogbn-arxiv, Reddit and ogbn-products, each also in a locality-preserving variant
/// (largest last). quick: two scale-16 graphs instead of the GNN-sized ones. only: when not
/// empty, just the matrices so named (the others are not even generated).
inline std::vector<Matrix> suite(const std::string& data_dir, bool quick,
                                 const std::vector<std::string>& only = {}) {
  std::vector<Matrix> out;
  const auto wanted = [&](const std::string& name) {
    return only.empty() || std::find(only.begin(), only.end(), name) != only.end();
  };
  namespace fs = std::filesystem;
  for (const char* name : {"bcsstk33", "fidapex6", "luxembourg", "ca-GrQc"}) {
    const fs::path path = fs::path(data_dir) / "mtx" / (std::string(name) + ".mtx");
    if (wanted(name) && fs::exists(path)) {
      out.push_back({name, canonicalize(coo_to_csr(read_matrix_market<float, int32_t>(path.string())))});
    }
  }
  const fs::path cora = fs::path(data_dir) / "cora" / "cora.cites";
  if (wanted("cora") && fs::exists(cora)) {
    EdgeListOptions o;
    o.symmetrize = true;
    o.compact_ids = true;
    out.push_back({"cora", canonicalize(coo_to_csr(read_edge_list<float, int32_t>(cora.string(), o)))});
  }
  struct Generated {
    const char* name;
    int scale;
    double edge_factor;
    bool locality;
    uint64_t seed;
  };
  const std::vector<Generated> generated =
      quick ? std::vector<Generated>{{"rmat-s16", 16, 16, false, 1}, {"rmat-s16-local", 16, 16, true, 1}}
            : std::vector<Generated>{{"arxiv-like", 17, 7, false, 1},  // 131k nodes, 0.88M edges
                                     {"arxiv-like-local", 17, 7, true, 1},
                                     {"reddit-like", 18, 420, false, 2},  // 262k nodes, 76M edges
                                     {"reddit-like-local", 18, 420, true, 2},
                                     {"products-like", 21, 58, false, 3},  // 2.1M nodes, 112M edges
                                     {"products-like-local", 21, 58, true, 3}};
  for (const Generated& g : generated) {
    if (wanted(g.name)) out.push_back({g.name, rmat(g.scale, g.edge_factor, g.locality, g.seed), true});
  }
  return out;
}

/// Times fn with CUDA events on ctx's stream: warm-up, then reps runs, each after an L2 flush.
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
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

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

/// ||got - want|| / ||want|| in float64; infinity when got has a NaN or an infinity.
inline double relative_error(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += double(got[i] - want[i]) * double(got[i] - want[i]);
    den += double(want[i]) * double(want[i]);
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

/// A sweep's timings as {schedule: ms} in the order tried: the data for refitting the default
/// heuristic without another device run.
inline nlohmann::ordered_json sweep_json(const std::vector<std::pair<std::string, double>>& sweep) {
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  for (const auto& [name, ms] : sweep) out[name] = ms;
  return out;
}

}  // namespace tessera::bench
