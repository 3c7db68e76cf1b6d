// A prototype column-tiled SDDMM for bench/sddmm_bounds_gpu: how close real kernels of the
// column-tile design come to that design's yardstick. Not a library operator (no schedule, no
// int64 indices, f32 only, F = 32, 64 or 128); the library's SDDMM is ops::sddmm.
//
// The design: A's nonzeros are regrouped once (on the host, like cuSPARSE's preprocessing) into
// column tiles of tile_cols columns; within a tile, each row's nonzeros there form a segment, a
// contiguous run of A's CSR (columns are sorted within rows; at most kMaxSegment long), so outputs
// are still written at their CSR positions. A block takes a chunk of one tile's segments and copies
// Y's tile_cols rows of the tile into shared memory; then one of two kernels (TiledKernel) works
// through the chunk: a team of F / 4 lanes per segment, or a lane per nonzero.
//
// Measured (bench/RESULTS.md, "SDDMM", session 29): on the GNN-sized graphs each kernel ran at
// 0.29-0.88x the speed of ops::sddmm's default (the better of the two at 0.31-0.88x), far from
// the column-tile yardstick; kept so that the next attempt at the design starts from a checked
// kernel and its numbers.
#pragma once

#include <cstdint>
#include <vector>

namespace tessera::bench {

/// The most nonzeros a segment holds: longer runs of a row in a tile are cut (each piece loads
/// X's row again), to bound the rounds the teams of a warp, which walk their segments in lockstep,
/// spend waiting on the longest.
constexpr int kMaxSegment = 16;

struct ColumnTiles {
  int64_t tile_cols = 0;
  int64_t nnz = 0;
  std::vector<int32_t> seg_row;      // [segments] the segment's row
  std::vector<int32_t> seg_begin;    // [segments] its first nonzero (a CSR position)
  std::vector<int32_t> seg_end;      // [segments] one past its last
  std::vector<int32_t> chunk_tile;   // [chunks] the tile a block works on
  std::vector<int32_t> chunk_first;  // [chunks] its first segment (segments are grouped by tile)
  std::vector<int32_t> chunk_last;   // [chunks] one past its last
  // The same nonzeros one by one in tile order (the segments' runs concatenated), for the
  // lane-per-nonzero kernel: each one's row and CSR position; chunk c covers
  // [nz_of_segment(chunk_first[c]), nz_of_segment(chunk_last[c])).
  std::vector<int32_t> nz_row;          // [nnz]
  std::vector<int32_t> nz_pos;          // [nnz]
  std::vector<int32_t> chunk_nz_begin;  // [chunks]
  std::vector<int32_t> chunk_nz_end;    // [chunks]
};

/// The two kernels over the tiling: a team of F / 4 lanes per segment (four segments' loads in
/// flight), or a lane per nonzero (each lane its own dot product: X's row from L1 / L2, Y's from
/// shared memory, read in a lane-rotated order so that a warp's reads spread over the banks).
enum class TiledKernel { team_per_segment, lane_per_nonzero };

/// Regroups a CSR (columns sorted within rows, nnz < 2^31) into column tiles, with chunks of about
/// chunk_nnz nonzeros (never spanning two tiles; a segment is never split).
ColumnTiles build_column_tiles(const int32_t* indptr, const int32_t* indices, int64_t rows, int64_t cols,
                               int64_t tile_cols, int64_t chunk_nnz);

/// The tiling on the device (owns its arrays).
class DeviceColumnTiles {
 public:
  /// Copies the tiling to the device; returns once the copies have landed.
  explicit DeviceColumnTiles(const ColumnTiles& host);
  ~DeviceColumnTiles();
  DeviceColumnTiles(const DeviceColumnTiles&) = delete;
  DeviceColumnTiles& operator=(const DeviceColumnTiles&) = delete;

  /// out[e] = <X[row(e)], Y[col(e)]> for every nonzero; x: [rows, F], y: [cols, F], row-major,
  /// 16-byte aligned; indices: A's column indices on the device.
  void run(TiledKernel kernel, const int32_t* indices, const float* x, const float* y, int64_t cols, int64_t F,
           float* out, void* stream) const;

 private:
  int64_t tile_cols_ = 0, chunks_ = 0;
  int32_t* arrays_ = nullptr;  // every array of ColumnTiles, one after another
  const int32_t *seg_row_ = nullptr, *seg_begin_ = nullptr, *seg_end_ = nullptr;
  const int32_t *chunk_tile_ = nullptr, *chunk_first_ = nullptr, *chunk_last_ = nullptr;
  const int32_t *nz_row_ = nullptr, *nz_pos_ = nullptr, *chunk_nz_begin_ = nullptr, *chunk_nz_end_ = nullptr;
};

}  // namespace tessera::bench
