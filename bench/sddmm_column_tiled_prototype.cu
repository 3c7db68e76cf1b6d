// The prototype column-tiled SDDMM (sddmm_column_tiled_prototype.h).
#include <cuda_runtime.h>

#include <algorithm>

#include "bench/sddmm_column_tiled_prototype.h"
#include "core/cuda_check.h"
#include "core/device.h"
#include "core/error.h"
#include "ops/cuda_common.cuh"

namespace tessera::bench {

ColumnTiles build_column_tiles(const int32_t* indptr, const int32_t* indices, int64_t rows, int64_t cols,
                               int64_t tile_cols, int64_t chunk_nnz) {
  TSR_CHECK(tile_cols > 0 && chunk_nnz > 0, "build_column_tiles: tile_cols = ", tile_cols,
            " and chunk_nnz = ", chunk_nnz, " must be positive");
  const int64_t tiles = (cols + tile_cols - 1) / tile_cols;
  ColumnTiles out;
  out.tile_cols = tile_cols;
  out.nnz = rows > 0 ? indptr[rows] : 0;
  // Count each tile's segments, then place them (rows increase within a tile).
  std::vector<int64_t> start(size_t(tiles) + 1, 0);
  const auto for_each_segment = [&](auto&& visit) {  // visit(tile, row, begin, end)
    for (int64_t r = 0; r < rows; ++r) {
      int32_t k = indptr[r];
      while (k < indptr[r + 1]) {
        const int64_t t = indices[k] / tile_cols;
        int32_t e = k + 1;  // a segment ends at the tile's edge, the row's end, or kMaxSegment
        while (e < indptr[r + 1] && indices[e] / tile_cols == t && e - k < kMaxSegment) ++e;
        visit(t, int32_t(r), k, e);
        k = e;
      }
    }
  };
  for_each_segment([&](int64_t t, int32_t, int32_t, int32_t) { ++start[size_t(t) + 1]; });
  for (int64_t t = 0; t < tiles; ++t) start[size_t(t) + 1] += start[size_t(t)];
  const size_t segments = size_t(start[size_t(tiles)]);
  out.seg_row.resize(segments);
  out.seg_begin.resize(segments);
  out.seg_end.resize(segments);
  std::vector<int64_t> next(start.begin(), start.end() - 1);
  for_each_segment([&](int64_t t, int32_t r, int32_t b, int32_t e) {
    const size_t s = size_t(next[size_t(t)]++);
    out.seg_row[s] = r, out.seg_begin[s] = b, out.seg_end[s] = e;
  });
  // Chunks: a tile's segments cut after about chunk_nnz nonzeros.
  for (int64_t t = 0; t < tiles; ++t) {
    int64_t first = start[size_t(t)], nnz = 0;
    for (int64_t s = first; s < start[size_t(t) + 1]; ++s) {
      nnz += out.seg_end[size_t(s)] - out.seg_begin[size_t(s)];
      if (nnz >= chunk_nnz || s + 1 == start[size_t(t) + 1]) {
        out.chunk_tile.push_back(int32_t(t));
        out.chunk_first.push_back(int32_t(first));
        out.chunk_last.push_back(int32_t(s + 1));
        first = s + 1, nnz = 0;
      }
    }
  }
  // The nonzeros in tile order, and each chunk's range of them.
  std::vector<int64_t> nz_of_segment(segments + 1, 0);
  for (size_t g = 0; g < segments; ++g) nz_of_segment[g + 1] = nz_of_segment[g] + (out.seg_end[g] - out.seg_begin[g]);
  out.nz_row.resize(size_t(out.nnz));
  out.nz_pos.resize(size_t(out.nnz));
  for (size_t g = 0; g < segments; ++g) {
    for (int32_t k = out.seg_begin[g]; k < out.seg_end[g]; ++k) {
      const size_t i = size_t(nz_of_segment[g] + (k - out.seg_begin[g]));
      out.nz_row[i] = out.seg_row[g], out.nz_pos[i] = k;
    }
  }
  for (size_t c = 0; c < out.chunk_tile.size(); ++c) {
    out.chunk_nz_begin.push_back(int32_t(nz_of_segment[size_t(out.chunk_first[c])]));
    out.chunk_nz_end.push_back(int32_t(nz_of_segment[size_t(out.chunk_last[c])]));
  }
  return out;
}

namespace {

constexpr int kBlock = 1024;          // 32 warps an SM at one block
constexpr int kInFlight = 4;          // nonzeros of a segment a team works on at once
constexpr int kSegmentsInFlight = 4;  // segments whose X rows and indices a team loads at once

// One block a chunk: Y's tile into shared memory, then a team of LANES lanes a segment.
template <int LANES>
__global__ void __launch_bounds__(kBlock)
    column_tiled_sddmm_kernel(const int32_t* __restrict__ chunk_tile, const int32_t* __restrict__ chunk_first,
                              const int32_t* __restrict__ chunk_last, const int32_t* __restrict__ seg_row,
                              const int32_t* __restrict__ seg_begin, const int32_t* __restrict__ seg_end,
                              const int32_t* __restrict__ indices, const float4* __restrict__ x,
                              const float4* __restrict__ y, int64_t cols, int tile_cols, float* __restrict__ out) {
  extern __shared__ float4 tile[];  // [tile_cols][LANES]: Y's rows of this tile
  const int chunk = blockIdx.x;
  const int64_t base = int64_t(chunk_tile[chunk]) * tile_cols;
  const int tile_rows = int(min(int64_t(tile_cols), cols - base));
  const float4* y_tile = y + base * LANES;
  for (int i = threadIdx.x; i < tile_rows * LANES; i += kBlock) tile[i] = __ldg(y_tile + i);
  __syncthreads();
  const int lane = threadIdx.x % LANES;
  const int first = chunk_first[chunk], last = chunk_last[chunk];
  constexpr int kTeams = kBlock / LANES;
  // Team t takes kSegmentsInFlight consecutive segments at a time: first their rows and ranges,
  // then all their X rows and first indices, then the products, segment by segment. Every lane of
  // a warp runs the same number of shuffle rounds: the teams of a warp walk their segments in
  // lockstep (a team past its last segment or nonzero still takes part, writing nothing). Segments
  // of at most kMaxSegment (build_column_tiles) bound the rounds lost to that, but on the R-MAT
  // graphs most rounds still carry few nonzeros (bench/RESULTS.md).
  const int team = int(threadIdx.x) / LANES, warp_team0 = int(threadIdx.x) / 32 * (32 / LANES);
  constexpr int G = kSegmentsInFlight;
  for (int b = first + team * G, wb = first + warp_team0 * G; wb < last; b += kTeams * G, wb += kTeams * G) {
    int row[G], k[G], end[G];
#pragma unroll
    for (int g = 0; g < G; ++g) {
      const bool valid = b + g < last;
      row[g] = valid ? __ldg(seg_row + b + g) : 0;
      k[g] = valid ? __ldg(seg_begin + b + g) : 0;
      end[g] = valid ? __ldg(seg_end + b + g) : 0;
    }
    float4 xv[G];
    int held[G];  // a segment's column indices, LANES at a time
#pragma unroll
    for (int g = 0; g < G; ++g) {
      xv[g] = k[g] < end[g] ? __ldg(x + int64_t(row[g]) * LANES + lane) : make_float4(0, 0, 0, 0);
      held[g] = k[g] + lane < end[g] ? __ldg(indices + k[g] + lane) : 0;
    }
#pragma unroll
    for (int g = 0; g < G; ++g) {
      int rounds = (end[g] - k[g] + kInFlight - 1) / kInFlight;
#pragma unroll
      for (int offset = LANES; offset < 32; offset *= 2)
        rounds = max(rounds, __shfl_xor_sync(0xffffffffu, rounds, offset));
      for (int round = 0; round < rounds; ++round, k[g] += kInFlight) {
        const int at = (round * kInFlight) % LANES;  // where this round's indices sit in held[g]
        if (at == 0 && round > 0) held[g] = k[g] + lane < end[g] ? __ldg(indices + k[g] + lane) : 0;
        float dot[kInFlight];
#pragma unroll
        for (int u = 0; u < kInFlight; ++u) {
          const int column = __shfl_sync(0xffffffffu, held[g], at + u, LANES);  // every lane takes part
          const float4 yv = tile[(k[g] + u < end[g] ? column - int(base) : 0) * LANES + lane];
          dot[u] = xv[g].x * yv.x + xv[g].y * yv.y + xv[g].z * yv.z + xv[g].w * yv.w;
        }
        const float d = ops::cuda::team_sum_by_edge(dot, lane, LANES, 0xffffffffu);
        if (lane < kInFlight && k[g] + lane < end[g]) out[k[g] + lane] = d;
      }
    }
  }
}

// One block a chunk: Y's tile into shared memory, then a lane per nonzero. V: float4s a row.
template <int V>
__global__ void __launch_bounds__(kBlock, 1)
    lane_per_nonzero_kernel(const int32_t* __restrict__ chunk_tile, const int32_t* __restrict__ chunk_nz_begin,
                            const int32_t* __restrict__ chunk_nz_end, const int32_t* __restrict__ nz_row,
                            const int32_t* __restrict__ nz_pos, const int32_t* __restrict__ indices,
                            const float4* __restrict__ x, const float4* __restrict__ y, int64_t cols, int tile_cols,
                            float* __restrict__ out) {
  extern __shared__ float4 tile[];  // [tile_cols][V]: Y's rows of this tile
  const int chunk = blockIdx.x;
  const int64_t base = int64_t(chunk_tile[chunk]) * tile_cols;
  const int tile_rows = int(min(int64_t(tile_cols), cols - base));
  const float4* y_tile = y + base * V;
  for (int i = threadIdx.x; i < tile_rows * V; i += kBlock) tile[i] = __ldg(y_tile + i);
  __syncthreads();
  const int rotate = int(threadIdx.x) % V;  // lane l reads piece (q + l) % V at step q
  for (int i = chunk_nz_begin[chunk] + int(threadIdx.x); i < chunk_nz_end[chunk]; i += kBlock) {
    const int pos = __ldg(nz_pos + i);
    const float4* x_row = x + int64_t(__ldg(nz_row + i)) * V;
    const float4* y_row = tile + (__ldg(indices + pos) - int(base)) * V;
    float acc = 0;
#pragma unroll(V <= 8 ? 8 : 4)
    for (int q = 0; q < V; ++q) {
      const int piece = (q + rotate) % V;
      const float4 xv = __ldg(x_row + piece), yv = y_row[piece];
      acc += xv.x * yv.x + xv.y * yv.y + xv.z * yv.z + xv.w * yv.w;
    }
    out[pos] = acc;
  }
}

// One block a chunk, with the tile's shared memory.
template <class... Params, class... Args>
void launch_chunks(void (*kernel)(Params...), int64_t chunks, size_t smem, cudaStream_t stream, Args... args) {
  TSR_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  kernel<<<unsigned(chunks), kBlock, smem, stream>>>(args...);
  TSR_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

DeviceColumnTiles::DeviceColumnTiles(const ColumnTiles& host) : tile_cols_(host.tile_cols) {
  const size_t segments = host.seg_row.size(), chunks = host.chunk_tile.size();
  chunks_ = int64_t(chunks);
  const size_t total = 3 * segments + 5 * chunks + 2 * host.nz_row.size();
  if (total == 0) return;
  TSR_CUDA_CHECK(cudaMalloc(&arrays_, total * sizeof(int32_t)));
  int32_t* at = arrays_;
  const auto put = [&](const std::vector<int32_t>& v, const int32_t*& field) {
    // Returns once the copy has landed: the kernels run on non-blocking streams.
    device::copy(at, MemorySpace::device, v.data(), MemorySpace::host, v.size() * sizeof(int32_t));
    field = at;
    at += v.size();
  };
  put(host.seg_row, seg_row_);
  put(host.seg_begin, seg_begin_);
  put(host.seg_end, seg_end_);
  put(host.chunk_tile, chunk_tile_);
  put(host.chunk_first, chunk_first_);
  put(host.chunk_last, chunk_last_);
  put(host.nz_row, nz_row_);
  put(host.nz_pos, nz_pos_);
  put(host.chunk_nz_begin, chunk_nz_begin_);
  put(host.chunk_nz_end, chunk_nz_end_);
}

DeviceColumnTiles::~DeviceColumnTiles() { cudaFree(arrays_); }

void DeviceColumnTiles::run(TiledKernel kernel, const int32_t* indices, const float* x, const float* y, int64_t cols,
                            int64_t F, float* out, void* stream_ptr) const {
  TSR_CHECK(F == 32 || F == 64 || F == 128, "column-tiled SDDMM prototype: F = ", F, " is not 32, 64 or 128");
  if (chunks_ == 0) return;
  const auto stream = static_cast<cudaStream_t>(stream_ptr);
  const int tc = int(tile_cols_);
  const size_t smem = size_t(tc) * size_t(F) * 4;
  const auto* x4 = reinterpret_cast<const float4*>(x);
  const auto* y4 = reinterpret_cast<const float4*>(y);
  const auto team = [&](auto kernel_fn) {
    launch_chunks(kernel_fn, chunks_, smem, stream, chunk_tile_, chunk_first_, chunk_last_, seg_row_, seg_begin_,
                  seg_end_, indices, x4, y4, cols, tc, out);
  };
  const auto lane = [&](auto kernel_fn) {
    launch_chunks(kernel_fn, chunks_, smem, stream, chunk_tile_, chunk_nz_begin_, chunk_nz_end_, nz_row_, nz_pos_,
                  indices, x4, y4, cols, tc, out);
  };
  const bool by_team = kernel == TiledKernel::team_per_segment;
  if (F == 32) by_team ? team(column_tiled_sddmm_kernel<8>) : lane(lane_per_nonzero_kernel<8>);
  if (F == 64) by_team ? team(column_tiled_sddmm_kernel<16>) : lane(lane_per_nonzero_kernel<16>);
  if (F == 128) by_team ? team(column_tiled_sddmm_kernel<32>) : lane(lane_per_nonzero_kernel<32>);
}

}  // namespace tessera::bench
