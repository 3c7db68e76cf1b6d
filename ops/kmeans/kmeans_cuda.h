// The GPU path of ops::kmeans (defined in kmeans_cuda.cu, built only with CUDA). kmeans.cpp
// checks the options and prepares the initial centroids on the host; everything per iteration
// runs on the device, batched over all problems, without host synchronisation.
#pragma once

#include <cstdint>
#include <vector>

#include "ops/kmeans/kmeans.h"

namespace tessera::ops::kmeans_cuda {

/// The starting centroids of a device fit: rows when set, else given.
struct InitialCentroids {
  const int64_t* rows = nullptr;         ///< host [B * K]: point indices whose rows are the seeds
  BatchedDenseView<const float> given;   ///< [B, K, D], host or device, shape already checked;
                                         ///< checked for NaN (and scaled for cosine) on the device
};

/// Lloyd iterations on the device; x is a device view. Writes r: labels, centroids and counts
/// as device buffers (r's own reused when their size fits), inertia and history on the host.
/// Scratch memory comes from ctx.workspace(), so repeated fits allocate nothing.
template <class V>
void fit(Context& ctx, BatchedDenseView<const V> x, int64_t k, const KmeansOptions& o,
         const InitialCentroids& init, KmeansResult& r);

/// Lloyd iterations on the device over a host batch larger than device memory
/// (KmeansOptions::gpu_streaming): each pass streams chunks of points (pinned in place when
/// possible; copies overlap the kernels on a second stream), assigns them and adds their
/// per-cluster sums into f64 accumulators in chunk order, then updates the centroids. One pass
/// over X per iteration; labels, centroids and counts of r on the host. initial: [B, K, D], host
/// or device, shape already checked (contents checked here).
template <class V>
void fit_streamed(Context& ctx, BatchedDenseView<const V> x, int64_t k, const KmeansOptions& o,
                  BatchedDenseView<const float> initial, KmeansResult& r);

/// Labels (and distances, unless null) of x's points against centroids [B, K, D] (host or
/// device, shape already checked; NaN checked and cosine scaling done here). labels and
/// distances are device pointers [B, N]. exact_f32: KmeansOptions::exact_f32.
template <class V>
void assign(Context& ctx, BatchedDenseView<const V> x, BatchedDenseView<const float> centroids,
            KmeansMetric metric, int32_t* labels, float* distances, bool exact_f32);

/// k-means|| candidates of one problem: point indices (distinct, at least K), their rows as the
/// seeding sees them (unit length for cosine), and weights (points nearest to each).
struct Candidates {
  std::vector<int64_t> rows;
  std::vector<float> vectors;  // [rows.size(), D]
  std::vector<int32_t> weights;
};

/// k-means|| (Bahmani et al. 2012) oversampling on the device: a first point drawn from
/// seeds[b], then `rounds` passes each drawing every point with probability
/// min(1, oversampling * K * d^2 / phi) independently (d^2: squared distance to the nearest
/// candidate so far, phi: their sum), distances on tensor cores. The caller reduces the
/// candidates to K seeds by weighted k-means++. Checks X like fit().
template <class V>
std::vector<Candidates> parallel_candidates(Context& ctx, BatchedDenseView<const V> x, int64_t k,
                                            KmeansMetric metric,
                                            const std::vector<uint64_t>& seeds, int rounds,
                                            double oversampling);

/// The largest D the GPU path takes on the current device: 2^20 where the streaming assignment
/// kernel fits (108 KiB of dynamic shared memory a block, so an opt-in of at least 109 KiB: A100,
/// H100/H200, B200); else only what a resident point tile allows (f32 D <= 64, 16-bit D <= 128
/// with the 99 KiB of sm_86/89/120). Up to a few hundred (H100: f32 320, 16-bit 640) the block's
/// points stay resident in shared memory; wider ones stream with the centroid tiles.
template <class V>
int64_t max_dimension();
/// Throws when D exceeds max_dimension<V>() (the error says why: 2^20, or this GPU's shared
/// memory); for the entry points that do host work before their first DeviceProblem.
template <class V>
void check_max_dimension(int64_t d, const char* what);

}  // namespace tessera::ops::kmeans_cuda
