// The CPU assignment kernels of ops::kmeans: for a block of points, the centroid with the
// smallest key, where key(c) = ||c||^2 - 2 x.c (l2) or -x.c (inner product; cosine on unit
// vectors). Ties go to the lower index. Two versions: a portable loop, and a GEMM (Eigen, built
// for x86-64-v3) over tiles of centroids with the running argmin kept per point.
#pragma once

#include <cstdint>

namespace tessera::ops::kmeans_cpu {

/// Centroids laid out for assignment.
struct CentroidTable {
  const float* data = nullptr;      // [k, dim], contiguous
  const float* sq_norms = nullptr;  // [k]: ||c||^2 (read for l2 only)
  int64_t k = 0;
  int64_t dim = 0;
};

/// Points a block holds at most; scratch for argmin_block_gemm is kPointBlock * kCentroidTile
/// floats.
constexpr int64_t kPointBlock = 256;
constexpr int64_t kCentroidTile = 256;

/// xb: [n, dim] contiguous, n <= kPointBlock. Writes best[i] (the argmin) and best_key[i].
void argmin_block_portable(const float* xb, int64_t n, const CentroidTable& c, bool l2,
                           int32_t* best, float* best_key);
void argmin_block_gemm(const float* xb, int64_t n, const CentroidTable& c, bool l2, int32_t* best,
                       float* best_key, float* scratch);

/// True when argmin_block_gemm may run here: always, unless its file was built for x86-64-v3
/// (TSR_KMEANS_GEMM_V3) and this CPU lacks AVX2 or FMA. Defined in kmeans.cpp, which is built for
/// the baseline, so asking is safe on any CPU.
bool gemm_kernel_usable();

}  // namespace tessera::ops::kmeans_cpu
