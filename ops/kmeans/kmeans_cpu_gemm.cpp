// argmin_block_gemm: the dot products of a block of points with a tile of centroids come from one
// Eigen GEMM ([n, dim] x [dim, tile]); the argmin then scans the tile row by row. The only file
// of the library that instantiates Eigen, so compiling it for x86-64-v3 (ops/CMakeLists.txt)
// cannot clash with an Eigen instantiation built for another instruction set. Callers ask
// gemm_kernel_usable() first; on CPUs without AVX2 + FMA they use argmin_block_portable.
// Parallelism is ours (blocks of points across threads); Eigen's GEMM stays on the calling thread.
#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/kmeans/kmeans_cpu.h"

namespace tessera::ops::kmeans_cpu {

void argmin_block_gemm(const float* xb, int64_t n, const CentroidTable& c, bool l2, int32_t* best,
                       float* best_key, float* scratch) {
  using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Eigen::Map<const RowMajor> x(xb, n, c.dim);
  std::fill(best_key, best_key + n, INFINITY);
  std::fill(best, best + n, 0);
  // Every GEMM of a call has the same width w (the centroids split evenly into tiles of at most
  // kCentroidTile, rounded up to 16); a short last tile is padded with zero centroids, never
  // chosen. A centroid's dot products thus round the same way in every tile, and equal centroids
  // tie exactly (the lower index then wins).
  const int64_t tiles = (c.k + kCentroidTile - 1) / kCentroidTile;
  const int64_t w = std::min(kCentroidTile, ((c.k + tiles - 1) / tiles + 15) / 16 * 16);
  thread_local std::vector<float> padded;
  for (int64_t t0 = 0; t0 < c.k; t0 += w) {
    const int64_t tile = std::min(w, c.k - t0);
    const float* tile_data = c.data + t0 * c.dim;
    if (tile < w) {
      padded.assign(size_t(w * c.dim), 0.0f);
      std::copy(tile_data, tile_data + tile * c.dim, padded.begin());
      tile_data = padded.data();
    }
    const Eigen::Map<const RowMajor> ct(tile_data, w, c.dim);
    Eigen::Map<RowMajor> dots(scratch, n, w);
    dots.noalias() = x * ct.transpose();
    for (int64_t i = 0; i < n; ++i) {
      const float* row = scratch + i * w;
      float bk = best_key[i];
      int32_t bi = best[i];
      for (int64_t j = 0; j < tile; ++j) {
        const float key = l2 ? c.sq_norms[t0 + j] - 2.0f * row[j] : -row[j];
        if (key < bk) bk = key, bi = int32_t(t0 + j);  // strict: the lower index keeps a tie
      }
      best_key[i] = bk;
      best[i] = bi;
    }
  }
}

}  // namespace tessera::ops::kmeans_cpu
