// CSR SpMM on the GPU, schedule csr.merge_path: work split evenly over the merge of row ends and
// nonzeros (the merge-path decomposition of Merrill & Garland, SC'16). The path has rows + nnz
// items; team t (tpr threads, each owning VEC features of one feature tile) takes the items
// [t * ipt, (t + 1) * ipt). A row of 10^5 nonzeros is thereby shared by many teams, and a run of
// empty rows costs what its writes cost, so power-law graphs have no straggler rows.
//
// Invariants:
// - A team finishes (stores alpha * acc + beta * C) exactly the rows whose end item lies on its
//   stretch of the path, so every row of C is stored once, by one team.
// - The one row a team leaves unfinished receives the team's partial sum as a carry. The teams
//   carrying one row are consecutive; a later kernel adds each row's carries (in a fixed order:
//   a hub row's long chain by whole pieces of 64 teams, summed first by a kernel of their own)
//   after the main kernel has stored the row. No atomics: the same bits on every run.
// - Each team finds its own stretch by two binary searches (its first and last diagonal, by two
//   lanes at once) and records its start for the fix-up: two launches per product, not three.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <type_traits>

#include "core/cuda_check.h"
#include "core/error.h"
#include "ops/cuda_common.cuh"
#include "ops/cuda_kernels.h"

namespace tessera::ops::cuda {

namespace {

constexpr int kThreads = 256;  // threads per block of the main kernel (kThreads / tpr teams)
constexpr int kFixupWarps = 8;
// Bounds that let the gather loop use 32-bit offsets (positions on a team's stretch, B's row
// stride in bytes).
constexpr int64_t kMaxItemsPerTeam = int64_t(1) << 30;
constexpr int64_t kMaxGatherStride = INT32_MAX;

// Nonzeros of A each lane of a team loads per chunk: a chunk (tpr x this) feeds batches of
// kGathersInFlight gathers, so 16-byte gathers (vec = 8, 16-bit values; a team of 4 at F = 32)
// keep 8 in flight rather than a team's 4.
template <int VEC>
constexpr int kEntriesPerLane = VEC == 8 ? 2 : 1;

// Registers are capped per instantiation (launches are kThreads wide): ptxas left to itself gave
// the f32 vec = 1 form 48 registers and spills; 64 keeps four blocks an SM. f32 at vec = 4 and
// the 16-bit vec = 8 forms (16-byte gathers both) get 80 (three blocks an SM), which their
// gathers in flight need; the 16-bit vec = 4 forms measured faster at 64 (reddit-like bf16
// F = 128: 2.62 ms at 64, 2.78 at 80). With their gathers held packed (PackedVec) their spills
// are in the set-up and the tail only, none in the gather loop.
template <class V, class I, int VEC>
__global__ void __maxnreg__(VEC * sizeof(V) == 16 ? 80 : 64)
    spmm_csr_merge_path_kernel(CsrView<V, I> a, DenseView<const V> b, DenseView<float> c, float alpha,
                               float beta, int tpr, int64_t ipt, int64_t teams, int64_t* start_row,
                               int64_t* start_nnz, float* carry, int64_t carry_ld) {
  const int lane = threadIdx.x % tpr;
  const int64_t team = int64_t(blockIdx.x) * (kThreads / tpr) + threadIdx.x / tpr;
  if (team >= teams) return;  // whole teams leave together
  const unsigned mask = team_mask(tpr);
  const int64_t F = c.cols;
  const int64_t tile = int64_t(blockIdx.y) * tpr * VEC;
  const int64_t f = tile + int64_t(lane) * VEC;
  const int width = f >= F ? 0 : (F - f >= VEC ? VEC : int(F - f));  // features this thread owns
  const bool full_tile = tile + int64_t(tpr) * VEC <= F;             // same for the whole team
  // Lane 0 finds where the team's stretch of the path starts, lane 1 where it ends.
  const int64_t path = a.rows + a.nnz;
  int64_t found_row = 0, found_nnz = 0;
  if (lane < 2) {
    const int64_t diag = (team + lane) * ipt < path ? (team + lane) * ipt : path;
    path_search(a.indptr, a.rows, a.nnz, diag, &found_row, &found_nnz);
  }
  const int64_t row0 = __shfl_sync(mask, static_cast<long long>(found_row), 0, tpr);
  const int64_t nnz_begin = __shfl_sync(mask, static_cast<long long>(found_nnz), 0, tpr);
  const int64_t last_row = __shfl_sync(mask, static_cast<long long>(found_row), 1, tpr);  // left unfinished
  const int64_t nnz_end = __shfl_sync(mask, static_cast<long long>(found_nnz), 1, tpr);
  if (blockIdx.y == 0 && lane == 0) start_row[team] = row0, start_nnz[team] = nnz_begin;
  if (blockIdx.y == 0 && lane == 1 && team == teams - 1) start_row[teams] = last_row, start_nnz[teams] = nnz_end;

  // From here on, positions are 32-bit offsets from the team's start: nonzero p is
  // nnz_begin + p and the team's row r is row0 + r (a stretch holds at most ipt <= 2^30 items,
  // checked on the host), so the gather loop does 32-bit index arithmetic. B rows are addressed
  // in bytes with a 32-bit stride (under 2 GiB, can_implement's condition).
  const int span = int(nnz_end - nnz_begin);
  const int rows_finished = int(last_row - row0);  // rows this team stores
  const I* col_at = a.indices + nnz_begin;
  const V* val_at = a.values + nnz_begin;
  const char* b_at = reinterpret_cast<const char*>(b.data + f);
  const int b_ld_bytes = int(b.ld * int64_t(sizeof(V)));
  const auto b_row = [&](I j) {
    // int32 indices: one 32 x 32 -> 64-bit multiply-add (a valid column index is not negative).
    if constexpr (sizeof(I) == 4) {
      return reinterpret_cast<const V*>(offset_by_product(b_at, uint32_t(j), uint32_t(b_ld_bytes)));
    } else {
      return reinterpret_cast<const V*>(b_at + int64_t(j) * b_ld_bytes);
    }
  };
  StretchRowEnds<I> ends(a.indptr, a.rows, row0, nnz_begin);
  int r = 0;
  int row_end = ends.current();
  float* c_row = c.data + row0 * c.ld + f;
  float acc[VEC] = {};
  const auto finish_row = [&] {
    if (width > 0) {
      float old[VEC] = {};
      if (beta != 0.0f) {
        if (width == VEC) {
          load_vec<VEC>(c_row, old);
        } else {
          load_partial<VEC>(c_row, width, old);
        }
      }
      float v[VEC];
#pragma unroll
      for (int i = 0; i < VEC; ++i) v[i] = beta == 0.0f ? alpha * acc[i] : alpha * acc[i] + beta * old[i];
      if (width == VEC) {
        store_vec<VEC>(c_row, v);
      } else {
        store_partial<VEC>(c_row, width, v);
      }
    }
#pragma unroll
    for (int i = 0; i < VEC; ++i) acc[i] = 0.0f;
    ++r;
    c_row += c.ld;
    row_end = ends.advance();
  };

  // (col, val) of the next chunk of E * tpr entries are loaded one chunk ahead, off the critical
  // path: entry q of a chunk is held by lane q / E as its (q % E)-th.
  constexpr int E = kEntriesPerLane<VEC>;
  const int chunk = E * tpr;
  I next_col[E];
  float next_val[E];
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const int q = lane * E + e;
    next_col[e] = q < span ? col_at[q] : I(0);
    next_val[e] = q < span ? load_f32(val_at[q]) : 0.0f;
  }
  for (int p0 = 0; p0 < span; p0 += chunk) {
    I col[E];
    float val[E];
#pragma unroll
    for (int e = 0; e < E; ++e) {
      col[e] = next_col[e];
      val[e] = next_val[e];
      const int q = p0 + chunk + lane * E + e;
      if (q < span) {
        next_col[e] = col_at[q];
        next_val[e] = load_f32(val_at[q]);
      }
    }
    const int batch = span - p0 < chunk ? span - p0 : chunk;
    int k = 0;  // a multiple of every U below (U a multiple of E) until the one-at-a-time tail
    // U gathers in flight, then the U products in path order (rows may end between them).
    const auto gather_batches = [&](auto in_flight) {
      constexpr int U = decltype(in_flight)::value;
      static_assert(U % E == 0, "entry k + u is held as the (u % E)-th");
      for (; k + U <= batch; k += U) {
        PackedVec<VEC, V> x[U];
        float v[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const I j = __shfl_sync(mask, col[u % E], (k + u) / E, tpr);
          v[u] = __shfl_sync(mask, val[u % E], (k + u) / E, tpr);
          x[u].load_read_only(b_row(j));
        }
        if (p0 + k + U <= row_end) {  // no row ends among these U entries (the common case)
#pragma unroll
          for (int u = 0; u < U; ++u) {
#pragma unroll
            for (int i = 0; i < VEC; ++i) acc[i] += v[u] * x[u](i);
          }
        } else {
#pragma unroll
          for (int u = 0; u < U; ++u) {
            while (p0 + k + u >= row_end) finish_row();
#pragma unroll
            for (int i = 0; i < VEC; ++i) acc[i] += v[u] * x[u](i);
          }
        }
      }
    };
    if (full_tile) {
      gather_batches(std::integral_constant<int, kGathersInFlight>{});
      gather_batches(std::integral_constant<int, 4>{});  // short batches (a chunk of 4)
    }
    for (; k < batch; ++k) {
      const bool second = E > 1 && k % E != 0;  // the same for the whole team
      const I j = __shfl_sync(mask, second ? col[E - 1] : col[0], k / E, tpr);
      const float v = __shfl_sync(mask, second ? val[E - 1] : val[0], k / E, tpr);
      const V* brow = b_row(j);
      float x[VEC];
      if (width == VEC) {
        load_vec<VEC>(brow, x);
      } else {
        load_partial<VEC>(brow, width, x);
      }
      while (p0 + k >= row_end) finish_row();
#pragma unroll
      for (int i = 0; i < VEC; ++i) acc[i] += v * x[i];
    }
  }
  while (r < rows_finished) finish_row();  // rows ending after this team's last nonzero (empty ones)
  // The partial sum of last_row (zero when the team holds none of its nonzeros; the fix-up skips it).
  if (width > 0 && last_row < a.rows) {
    float* out = carry + team * carry_ld + f;
    if (width == VEC) {
      store_vec<VEC>(out, acc);
    } else {
      store_partial<VEC>(out, width, acc);
    }
  }
}

// The row team t carries into, or -1 when it carries nothing (it ends the path, or holds none of
// that row's nonzeros).
template <class I>
__device__ int64_t carried_row(const I* indptr, int64_t rows, const int64_t* start_row,
                               const int64_t* start_nnz, int64_t t) {
  const int64_t r = start_row[t + 1];
  if (r >= rows) return -1;
  const int64_t first = start_nnz[t] > int64_t(indptr[r]) ? start_nnz[t] : int64_t(indptr[r]);
  return start_nnz[t + 1] > first ? r : -1;
}

// Teams a piece. A hub row's chain of thousands of teams is added by pieces: each whole piece's
// carries are summed by a warp of its own, then one warp adds the chain's few leading and trailing
// carries and its pieces' sums. Made only where some row spans kPieceChain teams or more (the
// Context's hint; shorter chains cost the fix-up less than two more launches would).
constexpr int64_t kPiece = 64;
constexpr int64_t kPieceChain = 8 * kPiece;

// Whether piece q (teams [q * kPiece, (q + 1) * kPiece)) lies wholly in the chain of one row:
// its first team carries a row r, and its last leaves r unfinished, so all between hold only r's
// nonzeros. Returns r, or -1.
template <class I>
__device__ int64_t piece_row(const I* indptr, int64_t rows, const int64_t* start_row,
                             const int64_t* start_nnz, int64_t q) {
  const int64_t r = carried_row(indptr, rows, start_row, start_nnz, q * kPiece);
  return r >= 0 && start_row[(q + 1) * kPiece] == r ? r : -1;  // start_row is nondecreasing
}

// A warp a piece q and 32-feature slice (blockIdx.y): piece_sum[q] = the carries of a piece lying
// wholly in one row's chain, added in team order. Other pieces are not written (and never read).
template <class I>
__global__ void __launch_bounds__(kFixupWarps* kWarp)
    merge_path_piece_sums_kernel(const I* indptr, int64_t rows, int64_t pieces, const int64_t* start_row,
                                 const int64_t* start_nnz, const float* carry, int64_t carry_ld, int64_t cols,
                                 float* piece_sum) {
  const int64_t q = int64_t(blockIdx.x) * kFixupWarps + threadIdx.x / kWarp;
  if (q >= pieces || piece_row(indptr, rows, start_row, start_nnz, q) < 0) return;
  for (int64_t f = int64_t(blockIdx.y) * kWarp + threadIdx.x % kWarp; f < cols;
       f += int64_t(gridDim.y) * kWarp) {
    float sum = 0.0f;
#pragma unroll 16
    for (int64_t t = q * kPiece; t < (q + 1) * kPiece; ++t) sum += carry[t * carry_ld + f];
    piece_sum[q * carry_ld + f] = sum;
  }
}

// One warp per team and 32-feature slice (blockIdx.y); the warps of the first team carrying a
// row add that row's carries, in team order, into C. Most rows cross one boundary, so a chain of
// one is found without a search. Slices in parallel: a warp looping over a wide row's features
// would wait on each slice's loads in turn (the C stores keep them from overlapping). With
// pieces (piece_sum not null), a chain holding a whole piece is left to
// merge_path_long_chains_kernel.
template <class I>
__global__ void __launch_bounds__(kFixupWarps* kWarp)
    merge_path_fixup_kernel(const I* indptr, int64_t rows, int64_t teams, const int64_t* start_row,
                            const int64_t* start_nnz, const float* carry, const float* piece_sum,
                            int64_t carry_ld, DenseView<float> c, float alpha) {
  const int64_t first = int64_t(blockIdx.x) * kFixupWarps + threadIdx.x / kWarp;
  if (first >= teams) return;
  // Both looked up at once (independent loads); the warp of a later team of the chain leaves.
  const int64_t r = carried_row(indptr, rows, start_row, start_nnz, first);
  const int64_t previous = first > 0 ? carried_row(indptr, rows, start_row, start_nnz, first - 1) : -1;
  if (r < 0 || previous == r) return;
  // The teams carrying r are first..last-1: those whose unfinished row (start_row[t + 1]) is r.
  const int64_t last = carry_chain_end(start_row, teams, first, r);
  // A chain holding a whole piece ([q0, q1) pieces, q0 < q1) is the long-chains kernel's.
  if (piece_sum != nullptr && (first + kPiece - 1) / kPiece < last / kPiece) return;
  for (int64_t f = int64_t(blockIdx.y) * kWarp + threadIdx.x % kWarp; f < c.cols;
       f += int64_t(gridDim.y) * kWarp) {
    float sum = 0.0f;
#pragma unroll 4
    for (int64_t t = first; t < last; ++t) sum += carry[t * carry_ld + f];
    c.data[r * c.ld + f] += alpha * sum;
  }
}

// The chains holding a whole piece, a warp each (that of their first whole piece q0) and 32-feature
// slice: carries [first, q0 * kPiece), the pieces' sums [q0, q1), carries [q1 * kPiece, last), in
// that order, into C.
template <class I>
__global__ void __launch_bounds__(kFixupWarps* kWarp)
    merge_path_long_chains_kernel(const I* indptr, int64_t rows, int64_t teams, int64_t pieces,
                                  const int64_t* start_row, const int64_t* start_nnz, const float* carry,
                                  const float* piece_sum, int64_t carry_ld, DenseView<float> c, float alpha) {
  const int64_t q0 = int64_t(blockIdx.x) * kFixupWarps + threadIdx.x / kWarp;
  if (q0 >= pieces) return;
  const int64_t r = piece_row(indptr, rows, start_row, start_nnz, q0);
  if (r < 0 || (q0 > 0 && piece_row(indptr, rows, start_row, start_nnz, q0 - 1) == r)) return;
  // The chain's first team: the first of the teams before q0's that carries r (start_row[t + 1]
  // == r, and some of r's nonzeros; only the earliest such team can hold none).
  int64_t lo = q0 * kPiece > kPiece ? q0 * kPiece - kPiece : 0, hi = q0 * kPiece;
  while (lo < hi) {  // the smallest t in [lo, hi] with start_row[t + 1] >= r
    const int64_t mid = lo + (hi - lo) / 2;
    if (start_row[mid + 1] >= r) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  const int64_t first = carried_row(indptr, rows, start_row, start_nnz, lo) == r ? lo : lo + 1;
  const int64_t last = carry_chain_end(start_row, teams, q0 * kPiece, r);
  const int64_t q1 = last / kPiece;  // the chain's whole pieces: [q0, q1)
  for (int64_t f = int64_t(blockIdx.y) * kWarp + threadIdx.x % kWarp; f < c.cols;
       f += int64_t(gridDim.y) * kWarp) {
    float sum = 0.0f;
    for (int64_t t = first; t < q0 * kPiece; ++t) sum += carry[t * carry_ld + f];
#pragma unroll 8
    for (int64_t q = q0; q < q1; ++q) sum += piece_sum[q * carry_ld + f];
    for (int64_t t = q1 * kPiece; t < last; ++t) sum += carry[t * carry_ld + f];
    c.data[r * c.ld + f] += alpha * sum;
  }
}

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

}  // namespace

template <class V, class I>
void spmm_csr_merge_path(Context& ctx, const CsrView<V, I>& a, DenseView<const V> b,
                         DenseView<float> c, float alpha, float beta, int tpr, int vec, int64_t ipt) {
  TSR_CHECK(tpr >= 4 && tpr <= kWarp && (tpr & (tpr - 1)) == 0, "spmm_csr_merge_path: tpr = ", tpr,
            " must be a power of two in [4, 32]");
  TSR_CHECK(ipt >= 1 && ipt <= kMaxItemsPerTeam, "spmm_csr_merge_path: ipt = ", ipt,
            " must be in [1, ", kMaxItemsPerTeam, "]");
  TSR_CHECK(b.ld <= kMaxGatherStride / int64_t(sizeof(V)), "spmm_csr_merge_path: B's leading dimension ",
            b.ld, " is a stride over 2 GiB; the merge path gathers rows with 32-bit strides");
  if (vec > 1) {
    const auto aligned = [&](const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; };
    TSR_CHECK(b.ld % vec == 0 && c.ld % vec == 0 && aligned(b.data, vec * sizeof(V)) &&
                  aligned(c.data, vec * sizeof(float)),
              "spmm_csr_merge_path: vec=", vec, " needs B and C rows aligned to ", vec,
              " elements (leading dimensions ", b.ld, ", ", c.ld, ")");
  }
  if (a.rows == 0 || c.cols == 0) return;
  const int64_t path = a.rows + a.nnz;
  const int64_t teams = (path + ipt - 1) / ipt;
  const int64_t tile = int64_t(tpr) * vec;
  const int64_t tiles = (c.cols + tile - 1) / tile;
  TSR_CHECK(tiles <= 65535, "spmm_csr_merge_path: F = ", c.cols, " needs ", tiles,
            " feature tiles of ", tile, "; at most 65535 (raise tpr or vec)");
  // Pieces where a row may span kPieceChain teams (the longest row from the Context's hint; when
  // none is recorded, any row may). A stale hint costs speed, and changes only the order in which
  // a hub row's carries are added.
  const int64_t longest = ctx.row_length_hint(a.indptr, a.rows, a.nnz);
  const int64_t pieces = longest < 0 || longest + 1 >= (kPieceChain - 1) * ipt ? teams / kPiece : 0;
  // Workspace: team start coordinates (teams + 1 of each), the carries, then the pieces' sums,
  // 16-byte aligned rows.
  const int64_t carry_ld = int64_t(round_up(size_t(c.cols), 4));
  const size_t coord_bytes = round_up(size_t(teams + 1) * sizeof(int64_t), 256);
  const size_t carry_bytes = round_up(size_t(teams) * size_t(carry_ld) * sizeof(float), 256);
  const size_t bytes = 2 * coord_bytes + carry_bytes + size_t(pieces) * size_t(carry_ld) * sizeof(float);
  auto* base = static_cast<unsigned char*>(ctx.workspace(bytes));
  auto* start_row = reinterpret_cast<int64_t*>(base);
  auto* start_nnz = reinterpret_cast<int64_t*>(base + coord_bytes);
  auto* carry = reinterpret_cast<float*>(base + 2 * coord_bytes);
  auto* piece_sum = pieces > 0 ? reinterpret_cast<float*>(base + 2 * coord_bytes + carry_bytes) : nullptr;
  const auto stream = static_cast<cudaStream_t>(ctx.stream());

  const dim3 grid(grid_for(teams, kThreads / tpr), unsigned(tiles));
  switch (vec) {
    case 1:
      spmm_csr_merge_path_kernel<V, I, 1><<<grid, kThreads, 0, stream>>>(
          a, b, c, alpha, beta, tpr, ipt, teams, start_row, start_nnz, carry, carry_ld);
      break;
    case 2:
      spmm_csr_merge_path_kernel<V, I, 2><<<grid, kThreads, 0, stream>>>(
          a, b, c, alpha, beta, tpr, ipt, teams, start_row, start_nnz, carry, carry_ld);
      break;
    case 4:
      spmm_csr_merge_path_kernel<V, I, 4><<<grid, kThreads, 0, stream>>>(
          a, b, c, alpha, beta, tpr, ipt, teams, start_row, start_nnz, carry, carry_ld);
      break;
    case 8:
      if constexpr (sizeof(V) == 2) {
        spmm_csr_merge_path_kernel<V, I, 8><<<grid, kThreads, 0, stream>>>(
            a, b, c, alpha, beta, tpr, ipt, teams, start_row, start_nnz, carry, carry_ld);
        break;
      }
      [[fallthrough]];
    default:
      TSR_FAIL("spmm_csr_merge_path: vec = ", vec, " must be 1, 2 or 4 (or 8 with 16-bit values)");
  }
  TSR_CUDA_CHECK_LAUNCH("spmm_csr_merge_path");
  const unsigned slices = unsigned(std::min<int64_t>((c.cols + kWarp - 1) / kWarp, 65535));
  const dim3 pieces_grid(grid_for(pieces, kFixupWarps), slices);
  if (pieces > 0) {
    merge_path_piece_sums_kernel<<<pieces_grid, kFixupWarps * kWarp, 0, stream>>>(
        a.indptr, a.rows, pieces, start_row, start_nnz, carry, carry_ld, c.cols, piece_sum);
    TSR_CUDA_CHECK_LAUNCH("spmm_csr_merge_path (pieces)");
  }
  merge_path_fixup_kernel<<<dim3(grid_for(teams, kFixupWarps), slices), kFixupWarps * kWarp, 0, stream>>>(
      a.indptr, a.rows, teams, start_row, start_nnz, carry, piece_sum, carry_ld, c, alpha);
  TSR_CUDA_CHECK_LAUNCH("spmm_csr_merge_path (carry fix-up)");
  if (pieces > 0) {
    merge_path_long_chains_kernel<<<pieces_grid, kFixupWarps * kWarp, 0, stream>>>(
        a.indptr, a.rows, teams, pieces, start_row, start_nnz, carry, piece_sum, carry_ld, c, alpha);
    TSR_CUDA_CHECK_LAUNCH("spmm_csr_merge_path (long carry chains)");
  }
}

#define TSR_INSTANTIATE_SPMM_MERGE_PATH(V, I)                                             \
  template void spmm_csr_merge_path(Context&, const CsrView<V, I>&, DenseView<const V>,   \
                                    DenseView<float>, float, float, int, int, int64_t);
TSR_FOR_EACH_COMPUTE_TYPE(TSR_INSTANTIATE_SPMM_MERGE_PATH)

}  // namespace tessera::ops::cuda
