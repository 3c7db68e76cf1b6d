// The bare gather and the empty launch (sddmm_bounds_kernels.h).
#include <cuda_runtime.h>

#include <algorithm>

#include "bench/sddmm_bounds_kernels.h"
#include "core/cuda_check.h"
#include "core/error.h"

namespace tessera::bench {
namespace {

constexpr int kBlock = 256;

// A 16-byte load kept in program order (volatile), as bench/experiments/gather_rows.cu measured.
__device__ __forceinline__ uint4 load16(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}

// A team of `lanes` threads (a power of two <= 32, so teams never straddle a warp) reads each row
// as P vectors a lane: lane l takes vectors l, l + lanes, ... of the row. Team t walks idx[t * per,
// (t + 1) * per): the nonzeros in CSR order, as an edge-split SDDMM walks them. G rows are loaded
// before any is summed, so G * P 16-byte loads are in flight a lane. (The launch bounds' minimum of
// one block an SM matters: at ptxas's default register target it sums each row as it lands and
// only one or two rows are in flight, which would make this floor slower than a real kernel.)
template <int P, int G>
__global__ void __launch_bounds__(kBlock, 1)
    bare_gather_kernel(const int32_t* __restrict__ idx, int64_t count, const uint4* __restrict__ table,
                       int64_t row_vectors, int lanes, uint32_t* __restrict__ checksums) {
  const int64_t thread = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t teams = int64_t(gridDim.x) * blockDim.x / lanes;
  const int64_t team = thread / lanes;
  const int lane = int(thread % lanes);
  const int64_t per = (count + teams - 1) / teams;
  int64_t e = min(count, team * per);
  const int64_t end = min(count, e + per);
  uint32_t sum = 0;
  const auto add = [&sum](const uint4& v) { sum += v.x + v.y + v.z + v.w; };
  for (; e + G <= end; e += G) {
    int32_t r[G];
#pragma unroll
    for (int g = 0; g < G; ++g) r[g] = __ldg(idx + e + g);
    uint4 v[G][P];
#pragma unroll
    for (int g = 0; g < G; ++g) {
#pragma unroll
      for (int p = 0; p < P; ++p) v[g][p] = load16(table + int64_t(r[g]) * row_vectors + lane + p * lanes);
    }
#pragma unroll
    for (int g = 0; g < G; ++g) {
#pragma unroll
      for (int p = 0; p < P; ++p) add(v[g][p]);
    }
  }
  for (; e < end; ++e) {
    const uint4* row = table + int64_t(__ldg(idx + e)) * row_vectors + lane;
#pragma unroll
    for (int p = 0; p < P; ++p) add(load16(row + p * lanes));
  }
  checksums[thread] = sum;
}

__global__ void empty_kernel() {}

template <int P, int G>
int64_t launch(const int32_t* idx, int64_t count, const void* table, int64_t row_vectors, int lanes,
               uint32_t* checksums, cudaStream_t stream) {
  int device = 0, sms = 0, blocks_per_sm = 0;
  TSR_CUDA_CHECK(cudaGetDevice(&device));
  TSR_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  TSR_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks_per_sm, bare_gather_kernel<P, G>, kBlock, 0));
  const int blocks = sms * blocks_per_sm;  // one full wave: every team's stretch runs at once
  bare_gather_kernel<P, G>
      <<<blocks, kBlock, 0, stream>>>(idx, count, static_cast<const uint4*>(table), row_vectors, lanes, checksums);
  TSR_CUDA_CHECK(cudaGetLastError());
  return int64_t(blocks) * kBlock;
}

// G rows in flight, capped so that a lane holds at most 16 vectors (64 registers) of loads.
template <int P>
int64_t launch_with_rows(int rows_in_flight, const int32_t* idx, int64_t count, const void* table, int64_t row_vectors,
                         int lanes, uint32_t* checksums, cudaStream_t stream) {
  const int g = std::min(rows_in_flight, 16 / P);
  if constexpr (P == 1) {
    if (g >= 16) return launch<1, 16>(idx, count, table, row_vectors, lanes, checksums, stream);
  }
  if constexpr (P <= 2) {
    if (g >= 8) return launch<P, 8>(idx, count, table, row_vectors, lanes, checksums, stream);
  }
  if (g >= 4) return launch<P, 4>(idx, count, table, row_vectors, lanes, checksums, stream);
  return launch<P, 2>(idx, count, table, row_vectors, lanes, checksums, stream);
}

}  // namespace

int64_t bare_gather(const int32_t* idx, int64_t count, const void* table, int64_t row_bytes, int rows_in_flight,
                    uint32_t* checksums, void* stream_ptr) {
  const int64_t vectors = row_bytes / 16;
  const bool narrow = row_bytes == 16 || row_bytes == 32 || row_bytes == 64 || row_bytes == 128 || row_bytes == 256;
  const bool wide = row_bytes % 512 == 0 && row_bytes >= 512 && row_bytes <= 2048;
  TSR_CHECK(narrow || wide, "bare_gather: row_bytes = ", row_bytes,
            " is not 16, 32, 64, 128, 256 or a multiple of 512 up to 2048");
  TSR_CHECK(rows_in_flight == 2 || rows_in_flight == 4 || rows_in_flight == 8 || rows_in_flight == 16,
            "bare_gather: rows_in_flight = ", rows_in_flight, " is not 2, 4, 8 or 16");
  TSR_CHECK(count >= 0, "bare_gather: count = ", count, " is negative");
  const auto stream = static_cast<cudaStream_t>(stream_ptr);
  const int lanes = int(std::min<int64_t>(vectors, 32));
  switch (vectors / lanes) {
    case 1:
      return launch_with_rows<1>(rows_in_flight, idx, count, table, vectors, lanes, checksums, stream);
    case 2:
      return launch_with_rows<2>(rows_in_flight, idx, count, table, vectors, lanes, checksums, stream);
    case 3:
      return launch_with_rows<3>(rows_in_flight, idx, count, table, vectors, lanes, checksums, stream);
    default:
      return launch_with_rows<4>(rows_in_flight, idx, count, table, vectors, lanes, checksums, stream);
  }
}

int64_t bare_gather_max_threads(int device) {
  int sms = 0, max_threads_per_sm = 0;
  TSR_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  TSR_CUDA_CHECK(cudaDeviceGetAttribute(&max_threads_per_sm, cudaDevAttrMaxThreadsPerMultiProcessor, device));
  return int64_t(sms) * max_threads_per_sm;
}

void empty_launch(void* stream) {
  empty_kernel<<<1, 32, 0, static_cast<cudaStream_t>(stream)>>>();
  TSR_CUDA_CHECK(cudaGetLastError());
}

}  // namespace tessera::bench
