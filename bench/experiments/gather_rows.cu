// Experiment, not part of the build: how fast can an H100/H200 gather random 64-byte rows (bf16,
// F = 32) compared with 128-byte rows (f32, F = 32)? SpMM at F = 32 is such a gather: one B row per
// nonzero. Our bf16 SpMM at F = 32 runs only 1.1-1.3x faster than f32 although it moves half the
// bytes. This program times (results and reading: bench/RESULTS.md, "bf16 at F = 32, the bare
// gather"):
//   ldg        the bare gather: each row read by a team of lanes, 16 bytes a lane, G rows a team
//              in flight; cache operators: default, .cg (L2 only) and .nc.L1::no_allocate
//   bulk       each lane copies one whole row into shared memory with cp.async.bulk (the copy
//              engine, completing on an mbarrier), S stages of 32 rows a warp in flight
//   spmm_like  a stripped bf16 SpMM (values, FMAs, row ends), with switches that remove its parts
// over index streams that are uniform, skewed, or the column stream of an R-MAT graph sorted by
// row. Every variant's sums are checked against the host, so nothing is optimised away.
// Build: nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a gather_rows.cu -o gather_rows
// Run:   ./gather_rows [edges_millions, default 76] [rmat]   ("rmat": only the R-MAT streams)
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#define CHECK(x)                                                                           \
  do {                                                                                     \
    cudaError_t e_ = (x);                                                                  \
    if (e_ != cudaSuccess) {                                                               \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                        \
    }                                                                                      \
  } while (0)

enum class Cache { normal, cg, nc_no_allocate };

__host__ __device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

template <Cache C>
__device__ __forceinline__ uint4 load16(const void* p) {
  uint4 v;
  if constexpr (C == Cache::normal) {
    asm volatile("ld.global.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  } else if constexpr (C == Cache::cg) {
    asm volatile("ld.global.cg.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  } else {
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  }
  return v;
}

// Sum of the 8 bf16 (or 4 f32) values of a 16-byte vector.
template <int kRowBytes>
__device__ __forceinline__ float sum16(uint4 v) {
  if constexpr (kRowBytes == 64) {
    float s = 0;
    for (uint32_t w : {v.x, v.y, v.z, v.w}) {
      s += __uint_as_float(w << 16) + __uint_as_float(w & 0xffff0000u);
    }
    return s;
  } else {
    return __uint_as_float(v.x) + __uint_as_float(v.y) + __uint_as_float(v.z) + __uint_as_float(v.w);
  }
}

// Teams of kRowBytes / 16 lanes; each team walks a contiguous stretch of the index stream, G rows
// at a time: G index loads, then G row loads, then the sums. (Without the launch bounds' "1",
// ptxas interleaves the sums with the loads to save registers and only two rows are in flight.)
template <int kRowBytes, int G, Cache C>
__global__ void __launch_bounds__(256, 1) ldg_gather(const int* __restrict__ idx, int64_t edges, const char* __restrict__ table,
                           float* __restrict__ out) {
  constexpr int kLanes = kRowBytes / 16;
  const int lane_in_team = threadIdx.x % kLanes;
  const int64_t team = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kLanes;
  const int64_t teams = int64_t(gridDim.x) * blockDim.x / kLanes;
  const int64_t per_team = (edges + teams - 1) / teams;
  const int64_t begin = min64(edges, team * per_team), end = min64(edges, begin + per_team);
  float acc = 0;
  int64_t e = begin;
  for (; e + G <= end; e += G) {
    int r[G];
#pragma unroll
    for (int g = 0; g < G; ++g) r[g] = __ldg(idx + e + g);
    uint4 v[G];
#pragma unroll
    for (int g = 0; g < G; ++g) v[g] = load16<C>(table + int64_t(r[g]) * kRowBytes + lane_in_team * 16);
#pragma unroll
    for (int g = 0; g < G; ++g) acc += sum16<kRowBytes>(v[g]);
  }
  for (; e < end; ++e) acc += sum16<kRowBytes>(load16<C>(table + int64_t(idx[e]) * kRowBytes + lane_in_team * 16));
  out[int64_t(blockIdx.x) * blockDim.x + threadIdx.x] = acc;
}

// A bf16 SpMM at F = 32 stripped to its gather loop, to find where the full kernel (the merge
// path) loses against the bare gather: teams of 4 lanes (8 features, 16 bytes a lane), each team
// one contiguous stretch of nonzeros (one wave: teams = resident capacity), found by a binary
// search of indptr. Per batch of G nonzeros: their columns and values, then G row gathers, then
// G x 8 FMAs into the lane's accumulators; a row ending inside the batch adds the accumulators
// to C with atomics (rows are long here). kShuffle: lane l loads nonzeros l, l+4, ... of the
// batch and the team shares them by shuffles (as the merge path does); otherwise every lane
// loads every column and value itself (the team's lanes read the same words: broadcasts).
// kValues = false: every value 1 (no value stream); kRowEnds = false: one row for the whole
// stretch (no row-end checks; C gets the stretch's sum at its first row): the bisection's switches.
// kPlainStores: a row that starts and ends inside the team's stretch is stored with two 16-byte
// stores (as the merge path stores the rows a team owns); only the stretch's first and last rows,
// which other teams share, take atomics.
template <int G, bool kShuffle, bool kValues = true, bool kRowEnds = true, int kMinBlocks = 1,
          bool kPlainStores = false>
__global__ void __launch_bounds__(256, kMinBlocks)
    spmm_like(const int* __restrict__ indptr, int rows, const int* __restrict__ col,
              const uint16_t* __restrict__ val, int64_t nnz, const char* __restrict__ b,
              float* __restrict__ c) {
  const int lane = threadIdx.x % 4;
  const int64_t team = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 4;
  const int64_t teams = int64_t(gridDim.x) * blockDim.x / 4;
  const int64_t per_team = (nnz + teams - 1) / teams;
  const int64_t begin = min64(nnz, team * per_team), end = min64(nnz, begin + per_team);
  const unsigned mask = 0xfu << (threadIdx.x % 32 / 4 * 4);
  // The row holding nonzero `begin`: the last r with indptr[r] <= begin.
  int lo = 0, hi = rows - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (indptr[mid] <= begin) lo = mid; else hi = mid - 1;
  }
  int row = lo;
  int64_t row_end = indptr[row + 1];
  float acc[8] = {};
  bool row_shared = indptr[row] < begin;  // the current row began in an earlier stretch
  const auto flush = [&] {
    float* out = c + int64_t(row) * 32 + lane * 8;
    if (kPlainStores && !row_shared) {
      reinterpret_cast<float4*>(out)[0] = make_float4(acc[0], acc[1], acc[2], acc[3]);
      reinterpret_cast<float4*>(out)[1] = make_float4(acc[4], acc[5], acc[6], acc[7]);
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[i] = 0;
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) atomicAdd(out + i, acc[i]), acc[i] = 0;
    }
    row_shared = false;  // the next row starts inside this stretch
  };
  const auto fma_row = [&](uint4 x, float v) {
    const uint32_t w[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      acc[2 * q] += v * __uint_as_float(w[q] << 16);
      acc[2 * q + 1] += v * __uint_as_float(w[q] & 0xffff0000u);
    }
  };
  int64_t e = begin;
  for (; e + G <= end; e += G) {
    int j[G];
    float v[G];
    if constexpr (kShuffle) {
      int my_j[G / 4];
      float my_v[G / 4];
#pragma unroll
      for (int q = 0; q < G / 4; ++q) {
        my_j[q] = __ldg(col + e + q * 4 + lane);
        my_v[q] = kValues ? __uint_as_float(uint32_t(__ldg(val + e + q * 4 + lane)) << 16) : 1.0f;
      }
#pragma unroll
      for (int g = 0; g < G; ++g) {
        j[g] = __shfl_sync(mask, my_j[g / 4], g % 4, 4);
        v[g] = kValues ? __shfl_sync(mask, my_v[g / 4], g % 4, 4) : 1.0f;
      }
    } else {
#pragma unroll
      for (int g = 0; g < G; ++g) {
        j[g] = __ldg(col + e + g);
        v[g] = __uint_as_float(uint32_t(__ldg(val + e + g)) << 16);
      }
    }
    uint4 x[G];
#pragma unroll
    for (int g = 0; g < G; ++g) x[g] = load16<Cache::normal>(b + int64_t(j[g]) * 64 + lane * 16);
    if (!kRowEnds || e + G <= row_end) {
#pragma unroll
      for (int g = 0; g < G; ++g) fma_row(x[g], v[g]);
    } else {
#pragma unroll
      for (int g = 0; g < G; ++g) {
        while (e + g >= row_end) flush(), row_end = indptr[++row + 1];
        fma_row(x[g], v[g]);
      }
    }
  }
  for (; e < end; ++e) {
    const uint4 x = load16<Cache::normal>(b + int64_t(col[e]) * 64 + lane * 16);
    while (kRowEnds && e >= row_end) flush(), row_end = indptr[++row + 1];
    fma_row(x, __uint_as_float(uint32_t(val[e]) << 16));
  }
  row_shared = true;  // the last row may go on past this stretch
  if (begin < end) flush();
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Each warp walks a contiguous stretch; S stages of 32 rows (one a lane) in shared memory, each
// filled by 32 cp.async.bulk copies that complete on the stage's mbarrier.
template <int kRowBytes, int S>
__global__ void bulk_gather(const int* __restrict__ idx, int64_t edges, const char* __restrict__ table,
                            float* __restrict__ out) {
  extern __shared__ __align__(128) char smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int warps_per_block = blockDim.x / 32;
  char* rows = smem + warp * S * 32 * kRowBytes;
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem + warps_per_block * S * 32 * kRowBytes) + warp * S;
  if (lane == 0) {
    for (int s = 0; s < S; ++s) {
      asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(bars + s)));
    }
    asm volatile("fence.mbarrier_init.release.cluster;");
  }
  __syncwarp();
  const int64_t gwarp = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int64_t warps = int64_t(gridDim.x) * blockDim.x / 32;
  const int64_t per_warp = ((edges + warps - 1) / warps + 31) / 32 * 32;
  const int64_t begin = min64(edges, gwarp * per_warp), end = min64(edges, begin + per_warp);
  const int64_t batches = (end - begin + 31) / 32;
  // Fills stage s with batch b: lane l copies row idx[begin + 32 b + l] (if any).
  auto issue = [&](int64_t b, int s) {
    const int64_t e = begin + b * 32 + lane;
    const int64_t count = min64(32, end - (begin + b * 32));
    if (lane == 0) {
      asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bars + s)),
                   "r"(uint32_t(count * kRowBytes)));
    }
    if (e < end) {
      const char* src = table + int64_t(__ldg(idx + e)) * kRowBytes;
      asm volatile(
          "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
              smem_addr(rows + (s * 32 + lane) * kRowBytes)),
          "l"(src), "r"(kRowBytes), "r"(smem_addr(bars + s))
          : "memory");
    }
  };
  for (int s = 0; s < S && s < batches; ++s) issue(s, s);
  float acc = 0;
  for (int64_t b = 0; b < batches; ++b) {
    const int s = int(b % S);
    const uint32_t parity = uint32_t((b / S) & 1);
    asm volatile(
        "{\n .reg .pred p;\n wait_%=:\n mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
        " @!p bra wait_%=;\n}" ::"r"(smem_addr(bars + s)),
        "r"(parity)
        : "memory");
    const int64_t count = min64(32, end - (begin + b * 32));
    if (lane < count) {  // lane l reads its own row back (as a team would read its slice)
      const uint4* row = reinterpret_cast<const uint4*>(rows + (s * 32 + lane) * kRowBytes);
#pragma unroll
      for (int q = 0; q < kRowBytes / 16; ++q) acc += sum16<kRowBytes>(row[q]);
    }
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    __syncwarp();
    if (b + S < batches) issue(b + S, s);
  }
  out[int64_t(blockIdx.x) * blockDim.x + threadIdx.x] = acc;
}

struct Case {
  std::string name;
  int row_bytes;
  double ms;
  double sum;
};

int main(int argc, char** argv) {
  const int64_t edges = int64_t((argc > 1 ? std::atof(argv[1]) : 76.0) * 1e6);
  const bool only_rmat = argc > 2 && std::string(argv[2]) == "rmat";  // just the R-MAT streams
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device %s, %d SMs, L2 %d MB; %lld gathers a run\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20, (long long)edges);
  const int sms = prop.multiProcessorCount;

  float* out = nullptr;
  const int64_t out_slots = int64_t(sms) * 64 * 1024;
  CHECK(cudaMalloc(&out, out_slots * sizeof(float)));
  char* flush = nullptr;
  const size_t flush_bytes = size_t(512) << 20;
  CHECK(cudaMalloc(&flush, flush_bytes));
  int* idx = nullptr;
  CHECK(cudaMalloc(&idx, edges * sizeof(int)));
  cudaEvent_t t0, t1;
  CHECK(cudaEventCreate(&t0));
  CHECK(cudaEventCreate(&t1));

  std::vector<int> csr_ptr;  // the R-MAT stream's row pointers
  for (const int64_t nodes : {int64_t(1) << 18, int64_t(1) << 21}) {
    for (const int kind : {0, 1, 2}) {
      if (only_rmat && kind != 2) continue;
      const bool skewed = kind == 1;
      std::vector<int> h(edges);
      std::mt19937_64 rng(nodes + kind);
      std::uniform_real_distribution<double> u(0, 1);
      if (kind < 2) {
        // Indices: uniform, or skewed (u^3 scaled, then scattered by a multiplicative hash so
        // that hot rows are not neighbours).
        for (auto& x : h) {
          const double v = skewed ? std::pow(u(rng), 3.0) : u(rng);
          const uint64_t k = std::min<uint64_t>(uint64_t(v * nodes), nodes - 1);
          x = int((k * 0x9E3779B1ull) % uint64_t(nodes));
        }
      } else {
        // The column stream of an R-MAT graph as the SpMM reads it (a = 0.57, b = c = 0.19,
        // vertices relabelled by a bijective hash): edges sorted by row, then column, duplicates
        // dropped; the first `edges` of them (the benchmark's reddit-like graph: scale 18,
        // 76M edges; products-like: scale 21, 112M edges; here cut to the same count).
        const int scale = nodes == (int64_t(1) << 18) ? 18 : 21;
        const int64_t draws = int64_t(double(edges) * (scale == 18 ? 1.45 : 1.6));
        std::vector<uint64_t> keys(draws);
        uint64_t state = uint64_t(scale);
        const auto next32 = [&] {  // splitmix64, upper half
          uint64_t z = (state += 0x9E3779B97F4A7C15ull);
          z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
          z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
          return uint32_t((z ^ (z >> 31)) >> 32);
        };
        const uint32_t ta = uint32_t(0.57 * 4294967296.0), tb = uint32_t(0.76 * 4294967296.0),
                       tc = uint32_t(0.95 * 4294967296.0);
        for (auto& k : keys) {
          uint64_t r = 0, c = 0;
          for (int level = 0; level < scale; ++level) {
            const uint32_t q = next32();
            const int rb = q >= tb, cb = (q >= ta && q < tb) || q >= tc;
            r = r << 1 | rb;
            c = c << 1 | cb;
          }
          const uint64_t mask = uint64_t(nodes) - 1;
          k = ((r * 0x9E3779B1ull) & mask) << 32 | ((c * 0x85EBCA77ull) & mask);
        }
        std::sort(keys.begin(), keys.end());
        keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
        std::printf("R-MAT scale %d: %lld distinct edges of %lld draws\n", scale, (long long)keys.size(),
                    (long long)draws);
        for (int64_t e = 0; e < edges; ++e) h[e] = int(keys[size_t(e) % keys.size()] & 0xffffffffu);
        // The CSR of the first `edges` nonzeros (rows in key order), for spmm_like.
        std::vector<int> ptr(size_t(nodes) + 1, 0);
        for (int64_t e = 0; e < edges; ++e) ++ptr[size_t(keys[size_t(e)] >> 32) + 1];
        for (int64_t r = 0; r < nodes; ++r) ptr[size_t(r) + 1] += ptr[size_t(r)];
        csr_ptr.assign(ptr.begin(), ptr.end());
      }
      CHECK(cudaMemcpy(idx, h.data(), edges * sizeof(int), cudaMemcpyHostToDevice));
      int* d_ptr = nullptr;
      uint16_t* d_val = nullptr;
      float* d_c = nullptr;
      if (kind == 2) {
        CHECK(cudaMalloc(&d_ptr, csr_ptr.size() * sizeof(int)));
        CHECK(cudaMemcpy(d_ptr, csr_ptr.data(), csr_ptr.size() * sizeof(int), cudaMemcpyHostToDevice));
        std::vector<uint16_t> vals(edges, 0x3f80);  // bf16 1.0
        CHECK(cudaMalloc(&d_val, edges * sizeof(uint16_t)));
        CHECK(cudaMemcpy(d_val, vals.data(), edges * sizeof(uint16_t), cudaMemcpyHostToDevice));
        CHECK(cudaMalloc(&d_c, size_t(nodes) * 32 * sizeof(float)));
      }
      for (const int row_bytes : {64, 128}) {
        // Every row holds the values 1, 2, ..., so the expected sum is known.
        const int per_row = row_bytes == 64 ? 32 : 32;
        char* table = nullptr;
        CHECK(cudaMalloc(&table, size_t(nodes) * row_bytes));
        std::vector<char> host_row(row_bytes);
        double row_sum = 0;
        for (int j = 0; j < per_row; ++j) {
          const float v = float(j % 8 + 1) / 8;
          row_sum += v;
          if (row_bytes == 64) {
            const __nv_bfloat16 b = __float2bfloat16(v);
            std::memcpy(host_row.data() + 2 * j, &b, 2);
          } else {
            std::memcpy(host_row.data() + 4 * j, &v, 4);
          }
        }
        std::vector<char> host_table(size_t(nodes) * row_bytes);
        for (int64_t r = 0; r < nodes; ++r) std::memcpy(host_table.data() + r * row_bytes, host_row.data(), row_bytes);
        CHECK(cudaMemcpy(table, host_table.data(), host_table.size(), cudaMemcpyHostToDevice));
        const double want = row_sum * double(edges);

        auto time = [&](const char* name, auto launch, int64_t threads) {
          std::vector<float> ms;
          double sum = 0;
          for (int rep = 0; rep < 7; ++rep) {
            CHECK(cudaMemset(flush, rep, flush_bytes));
            CHECK(cudaMemset(out, 0, out_slots * sizeof(float)));
            CHECK(cudaEventRecord(t0));
            launch();
            CHECK(cudaEventRecord(t1));
            CHECK(cudaEventSynchronize(t1));
            CHECK(cudaGetLastError());
            float m = 0;
            CHECK(cudaEventElapsedTime(&m, t0, t1));
            ms.push_back(m);
            if (rep == 0) {
              std::vector<float> o(threads);
              CHECK(cudaMemcpy(o.data(), out, threads * sizeof(float), cudaMemcpyDeviceToHost));
              for (float x : o) sum += x;
            }
          }
          std::sort(ms.begin(), ms.end());
          const double med = ms[ms.size() / 2];
          const bool ok = std::fabs(sum - want) <= 1e-3 * want;
          std::printf("nodes %8lld %-7s row %3dB %-28s %8.3f ms  %7.1f G rows/s  %7.1f GB/s  %s\n",
                      (long long)nodes, kind == 0 ? "uniform" : kind == 1 ? "skewed" : "rmat", row_bytes, name, med,
                      double(edges) / med * 1e-6, double(edges) * row_bytes / med * 1e-6,
                      ok ? "ok" : "WRONG SUM");
        };
        const int block = 256;
        auto ldg = [&](auto kernel, const char* name, int) {
          int blocks_per_sm = 0;  // one full wave: every team's stretch runs at once
          CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks_per_sm, kernel, block, 0));
          const int blocks = sms * blocks_per_sm;
          time(name, [&] { kernel<<<blocks, block>>>(idx, edges, table, out); }, int64_t(blocks) * block);
        };
        if (row_bytes == 64) {
          ldg(ldg_gather<64, 8, Cache::normal>, "ldg G=8", 8);
          ldg(ldg_gather<64, 16, Cache::normal>, "ldg G=16", 8);
          ldg(ldg_gather<64, 4, Cache::normal>, "ldg G=4", 8);
          ldg(ldg_gather<64, 8, Cache::cg>, "ldg.cg G=8", 8);
          ldg(ldg_gather<64, 8, Cache::nc_no_allocate>, "ldg.nc.L1::no_allocate G=8", 8);
        } else {
          ldg(ldg_gather<128, 8, Cache::normal>, "ldg G=8", 8);
          ldg(ldg_gather<128, 16, Cache::normal>, "ldg G=16", 8);
          ldg(ldg_gather<128, 8, Cache::cg>, "ldg.cg G=8", 8);
        }
        auto bulk = [&](auto kernel, const char* name, int stages, int warps_per_block, int blocks_per_sm) {
          const size_t smem = size_t(warps_per_block) * stages * 32 * row_bytes +
                              size_t(warps_per_block) * stages * 8;
          CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
          const int blocks = sms * blocks_per_sm;
          time(name, [&] { kernel<<<blocks, warps_per_block * 32, smem>>>(idx, edges, table, out); },
               int64_t(blocks) * warps_per_block * 32);
        };
        if (only_rmat) {
          // the copy engine's rates were measured in the first run (see RESULTS)
        } else if (row_bytes == 64) {
          bulk(bulk_gather<64, 2>, "bulk S=2 (8 warps x 2 blk)", 2, 8, 2);
          bulk(bulk_gather<64, 4>, "bulk S=4 (8 warps x 2 blk)", 4, 8, 2);
          bulk(bulk_gather<64, 4>, "bulk S=4 (16 warps x 1 blk)", 4, 16, 1);
          bulk(bulk_gather<64, 8>, "bulk S=8 (8 warps x 1 blk)", 8, 8, 1);
        } else {
          bulk(bulk_gather<128, 2>, "bulk S=2 (8 warps x 2 blk)", 2, 8, 2);
          bulk(bulk_gather<128, 4>, "bulk S=4 (8 warps x 1 blk)", 4, 8, 1);
        }
        if (kind == 2 && row_bytes == 64) {
          // Checked by the total of C: every row of the table sums to row_sum, every value is 1.
          auto spmm = [&](auto kernel, const char* name) {
            int blocks_per_sm = 0;
            CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks_per_sm, kernel, block, 0));
            const int blocks = sms * blocks_per_sm;
            std::vector<float> ms;
            double total = 0;
            for (int rep = 0; rep < 7; ++rep) {
              CHECK(cudaMemset(flush, rep, flush_bytes));
              CHECK(cudaMemset(d_c, 0, size_t(nodes) * 32 * sizeof(float)));
              CHECK(cudaEventRecord(t0));
              kernel<<<blocks, block>>>(d_ptr, int(nodes), idx, d_val, edges, table, d_c);
              CHECK(cudaEventRecord(t1));
              CHECK(cudaEventSynchronize(t1));
              CHECK(cudaGetLastError());
              float m = 0;
              CHECK(cudaEventElapsedTime(&m, t0, t1));
              ms.push_back(m);
              if (rep == 0) {
                std::vector<float> o(size_t(nodes) * 32);
                CHECK(cudaMemcpy(o.data(), d_c, o.size() * sizeof(float), cudaMemcpyDeviceToHost));
                for (float x : o) total += x;
              }
            }
            std::sort(ms.begin(), ms.end());
            const double med = ms[ms.size() / 2];
            std::printf("nodes %8lld rmat    row  64B %-28s %8.3f ms  %7.1f G rows/s  (%d blocks/SM)  %s\n",
                        (long long)nodes, name, med, double(edges) / med * 1e-6, blocks_per_sm,
                        std::fabs(total - want) <= 1e-3 * want ? "ok" : "WRONG SUM");
          };
          spmm(spmm_like<8, true>, "spmm_like shfl G=8");
          spmm(spmm_like<8, false>, "spmm_like bcast G=8");
          // The bisection (the checks still hold: every value is 1, and merged rows keep the total).
          spmm(spmm_like<8, true, false, true>, "spmm_like shfl G=8 no values");
          spmm(spmm_like<8, true, true, false>, "spmm_like shfl G=8 no row ends");
          spmm(spmm_like<8, true, false, false>, "spmm_like shfl G=8 neither");
          // The whole stripped kernel held to fewer registers (more blocks an SM).
          spmm(spmm_like<8, true, true, true, 3>, "spmm_like shfl G=8 3 blocks");
          spmm(spmm_like<8, true, true, true, 4>, "spmm_like shfl G=8 4 blocks");
          spmm(spmm_like<4, true, true, true, 4>, "spmm_like shfl G=4 4 blocks");
          spmm(spmm_like<8, true, true, true, 3, true>, "spmm_like G=8 3 blocks, stores");
          spmm(spmm_like<8, true, true, true, 4, true>, "spmm_like G=8 4 blocks, stores");
        }
        CHECK(cudaFree(table));
      }
      if (d_ptr) {
        CHECK(cudaFree(d_ptr));
        CHECK(cudaFree(d_val));
        CHECK(cudaFree(d_c));
      }
    }
  }
  return 0;
}
