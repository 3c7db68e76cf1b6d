// Device-side helpers shared by the CUDA kernels: loads of every value type as f32, warp sums.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "core/dtype.h"
#include "core/error.h"

namespace tessera::ops::cuda {

constexpr int kWarp = 32;

__device__ __forceinline__ float load_f32(float v) { return v; }
__device__ __forceinline__ float load_f32(bf16 v) { return __uint_as_float(uint32_t(v.bits) << 16); }
__device__ __forceinline__ float load_f32(f16 v) { return __half2float(__ushort_as_half(v.bits)); }

/// Sum over the 32 lanes of a warp; every lane receives the total (fixed order: deterministic).
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

/// Blocks needed for n items at per_block items a block, checked against the grid limit.
inline unsigned grid_for(int64_t n, int64_t per_block) {
  const int64_t blocks = (n + per_block - 1) / per_block;
  TSR_CHECK(blocks <= int64_t(0x7fffffff), "a launch over ", n, " items needs ", blocks,
            " blocks, more than the grid allows");
  return unsigned(blocks);
}

}  // namespace tessera::ops::cuda
