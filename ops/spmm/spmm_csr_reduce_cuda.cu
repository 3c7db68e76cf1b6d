// CSR SpMM with the GNN aggregations max and min on the GPU: C[r, f] = alpha * reduce_e(A[r, e] *
// B[col(e), f]) + beta * C[r, f], with an optional arg output. (mean runs the sum kernels, then
// spmm_mean_finish below: ops/spmm/spmm.cpp.)
// The semantics are the host kernel's (ops/spmm/spmm.cpp) and reference::spmm_reduce's:
// - a row's products meet in the row's order; max / min start from the first product as it is
//   (a -0 stays -0), a later one wins when strictly better, or when it is a NaN and the best is
//   not (NaN propagates); ties keep the earlier entry, whose column goes to arg;
// - an empty row reduces to 0, its arg is -1.
// Layout: the merge path of row ends and nonzeros (as csr.merge_path splits it) cut into stretches
// of ipt items, a group of tpr lanes a stretch, each lane owning 4 consecutive features (one
// vector gather a B row) where F and B's rows allow it, else 1, of a tile of tpr * vec features
// (tiles over blockIdx.y, grid-stride past 65535); the group loads tpr (col, val) pairs at a time
// and hands them out by shuffle, in group-uniform control flow, with B-row gathers in flight
// across row ends (as csr.merge_path's; 8 a lane of one feature, 4 of four). So a hub row is
// shared by many groups (a group a row made products-like's max 24x slower than its
// sum, and one row of 2.1M nonzeros 5600x; bench/RESULTS.md, session 27). Where no row is longer
// than a stretch (the Context's row-length hint), a group takes a row whole: no partials, one
// launch.
// Invariants:
// - A row that lies wholly in one stretch (its first nonzero and its end) is finished there.
// - A row begun before its last stretch leaves partials: the tail partial of each earlier stretch
//   that holds any of it (tail[t], possibly empty) and the head partial of the stretch it ends in
//   (head[t]). A later kernel combines them in stretch order and finishes the row; a hub row's
//   long chain goes by whole pieces of 64 stretches, each combined first by a kernel of its own.
//   Combining is associative for these rules (the first NaN, else the first strict best), and
//   every output is written by one thread in a fixed order: no atomics, the same bits every run.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/cuda_check.h"
#include "core/error.h"
#include "ops/cuda_common.cuh"
#include "ops/cuda_kernels.h"
#include "ops/spmm/spmm.h"

namespace tessera::ops::cuda {

namespace {

constexpr int kThreads = 256;
// Stretches a piece: a hub row's chain of tail partials is combined by whole pieces, each
// combined first by a group of its own (csr.merge_path's carries do the same).
constexpr int64_t kPiece = 64;
enum Mode : int { kMax = 1, kMin = 2 };
// The stretch kernel: 80 registers (three blocks an SM) and B-row gathers in flight a lane, 8 of
// one feature or 4 of four. On the H200 (f32, F = 32, products-like max) four features with 8 in
// flight took 10.8 ms at 80 registers (spilling in the gather loop) and 10.7 at 128, against 4.9
// ms with 4 in flight at 80; one feature with 8 in flight ran 5.5 ms at 80, 7.1 at 128.
constexpr int kMinBlocks = 3;
template <int VEC>
constexpr int kInFlight = VEC == 1 ? kGathersInFlight : 4;

// A partial reduction of some of one row's products, for one feature: the best product and its
// column (who = -1: no product yet).
struct Partial {
  float value = 0.0f;
  int64_t who = -1;
};

// Whether a product replaces the best so far: strictly better, or a NaN over a number.
__device__ __forceinline__ bool replaces(int mode, float product, float best) {
  return (mode == kMax ? product > best : product < best) || (product != product && best == best);
}

// `later` folded into `p` (which holds earlier products): the rules of a row's walk.
__device__ __forceinline__ void combine(int mode, Partial& p, const Partial& later) {
  if (later.who >= 0 && (p.who < 0 || replaces(mode, later.value, p.value))) p = later;
}

// C's entry for a row reduced to p (alpha, beta; arg).
__device__ __forceinline__ void finish(const Partial& p, float alpha, float beta, float* out, int64_t* arg_out) {
  const float value = __fmul_rn(alpha, p.value);
  *out = beta == 0.0f ? value : __fadd_rn(value, __fmul_rn(beta, *out));
  if (arg_out != nullptr) *arg_out = p.who;
}

// Partial slots: [stretch (or piece)][feature], F features each.
struct Partials {
  float* value = nullptr;
  int64_t* who = nullptr;
  __device__ void store(int64_t slot, const Partial& p) const { value[slot] = p.value, who[slot] = p.who; }
  __device__ Partial load(int64_t slot) const { return Partial{value[slot], who[slot]}; }
};

// Stretch t by a group of tpr lanes, each owning VEC consecutive features of a tile of tpr * VEC
// (VEC divides F, so a lane owns VEC features or none), as csr.merge_path walks it: the stretch's
// nonzeros as one stream, tpr (col, val) pairs loaded a chunk ahead and handed out by shuffle,
// kInFlight<VEC> row gathers of B in flight whether or not rows end among them, the products
// folded in path order, rows finished as their ends pass. A row wholly here is finished; the
// others leave head[t] (the row begun before t, ending here) or tail[t] (the row left unfinished,
// begun here or before). Without stretches (start_row null: no row is longer than a stretch would
// be), group t takes row t whole. While a row is walked, `who` is the position of its best product
// in the stream; it becomes a column only where one is needed (an arg output, a partial).
template <class V, class I, int VEC>
__global__ void __launch_bounds__(kThreads, kMinBlocks)
    spmm_csr_reduce_kernel(CsrView<V, I> a, DenseView<const V> b, DenseView<float> c, float alpha, float beta,
                           int mode, int64_t* arg, int tpr, const int64_t* start_row, const int64_t* start_nnz,
                           int64_t stretches, Partials head, Partials tail) {
  const int lane = threadIdx.x % tpr;
  const int64_t t = int64_t(blockIdx.x) * (kThreads / tpr) + threadIdx.x / tpr;
  if (t >= stretches) return;  // whole groups leave together
  const unsigned mask = team_mask(tpr);
  const bool whole_rows = start_row == nullptr;
  // Nonzeros [nz_begin, nz_end); rows [row0, last_row) end here; last_row, when < rows, is left
  // unfinished. Rows [0, row0) ended before nz_begin, so row0 begins at nz_begin or before it.
  const int64_t row0 = whole_rows ? t : start_row[t], last_row = whole_rows ? t + 1 : start_row[t + 1];
  const int64_t nz_begin = whole_rows ? int64_t(a.indptr[t]) : start_nnz[t];
  const int64_t nz_end = whole_rows ? int64_t(a.indptr[t + 1]) : start_nnz[t + 1];
  const bool row0_begun_before = !whole_rows && row0 < a.rows && int64_t(a.indptr[row0]) < nz_begin;
  const bool leaves_tail = !whole_rows && last_row < a.rows;
  // Positions in the stream are 32-bit (a stretch holds at most 4096 items; whole rows run only on
  // matrices of under 2^31 nonzeros, checked on the host).
  const int span = int(nz_end - nz_begin), rows_finished = int(last_row - row0);
  const I* col_at = a.indices + nz_begin;
  const V* val_at = a.values + nz_begin;
  const int64_t F = c.cols;
  const bool is_max = mode == kMax;
  const int64_t tile_width = int64_t(tpr) * VEC;
  const uint64_t b_ld_bytes = uint64_t(b.ld) * sizeof(V);
  for (int64_t f0 = int64_t(blockIdx.y) * tile_width; f0 < F; f0 += int64_t(gridDim.y) * tile_width) {
    const int64_t f = f0 + int64_t(lane) * VEC;
    const bool mine = f < F;  // the ragged last tile: lanes past F only hand out entries
    const char* b_at = reinterpret_cast<const char*>(b.data + (mine ? f : 0));
    StretchRowEnds<I> ends(a.indptr, a.rows, row0, nz_begin);
    int r = 0, row_end = ends.current();
    float acc[VEC];  // the best product
    int who[VEC];    // its position in the stream, -1 before the first
#pragma unroll
    for (int i = 0; i < VEC; ++i) acc[i] = 0.0f, who[i] = -1;
    const auto partial = [&](int i, bool column) {  // column: who as A's column, else as a flag
      return Partial{acc[i], who[i] >= 0 && column ? int64_t(col_at[who[i]]) : int64_t(who[i])};
    };
    const auto finish_row = [&] {
      if (mine) {
        const int64_t row = row0 + r;
        const bool to_head = r == 0 && row0_begun_before;
#pragma unroll
        for (int i = 0; i < VEC; ++i) {
          if (to_head) {
            head.store(t * F + f + i, partial(i, true));
          } else {
            finish(partial(i, arg != nullptr), alpha, beta, c.data + row * c.ld + f + i,
                   arg != nullptr ? arg + row * F + f + i : nullptr);
          }
        }
      }
#pragma unroll
      for (int i = 0; i < VEC; ++i) acc[i] = 0.0f, who[i] = -1;
      ++r;
      row_end = ends.advance();
    };
    const auto fold = [&](int position, float v, const PackedVec<VEC, V>& x) {
#pragma unroll
      for (int i = 0; i < VEC; ++i) {
        const float product = __fmul_rn(v, x(i));  // a plain f32 product, as the host's
        // Selects, not branches: the rules of replaces().
        const bool take = (who[i] < 0) | (is_max ? product > acc[i] : product < acc[i]) |
                          ((product != product) & (acc[i] == acc[i]));
        acc[i] = take ? product : acc[i];
        who[i] = take ? position : who[i];
      }
    };
    // (col, val) of the next chunk of tpr entries are loaded one chunk ahead: entry q of a chunk
    // is held by lane q.
    I next_col = lane < span ? col_at[lane] : I(0);
    float next_val = lane < span ? load_f32(val_at[lane]) : 0.0f;
    for (int p0 = 0; p0 < span; p0 += tpr) {
      const I col = next_col;
      const float val = next_val;
      if (p0 + tpr + lane < span) {
        next_col = col_at[p0 + tpr + lane];
        next_val = load_f32(val_at[p0 + tpr + lane]);
      }
      const int batch = span - p0 < tpr ? span - p0 : tpr;
      int k = 0;
      // U gathers in flight, then the U products in path order (rows may end between them).
      const auto gather_batches = [&](auto in_flight) {
        constexpr int U = decltype(in_flight)::value;
        for (; k + U <= batch; k += U) {
          PackedVec<VEC, V> x[U];
          float v[U];
#pragma unroll
          for (int u = 0; u < U; ++u) {
            const I j = __shfl_sync(mask, col, k + u, tpr);
            v[u] = __shfl_sync(mask, val, k + u, tpr);
            if (mine) {
              x[u].load_read_only(dense_row<V>(b_at, j, b_ld_bytes));
            } else {
              x[u].set_zero();
            }
          }
          if (p0 + k + U <= row_end) {  // no row ends among these U entries (the common case)
#pragma unroll
            for (int u = 0; u < U; ++u) fold(p0 + k + u, v[u], x[u]);
          } else {
#pragma unroll
            for (int u = 0; u < U; ++u) {
              while (p0 + k + u >= row_end) finish_row();
              fold(p0 + k + u, v[u], x[u]);
            }
          }
        }
      };
      if constexpr (kInFlight<VEC> == kGathersInFlight) {
        gather_batches(std::integral_constant<int, kGathersInFlight>{});
      }
      gather_batches(std::integral_constant<int, 4>{});
      gather_batches(std::integral_constant<int, 1>{});
    }
    while (r < rows_finished) finish_row();  // empty rows after the last nonzero
    if (leaves_tail && mine) {
#pragma unroll
      for (int i = 0; i < VEC; ++i) tail.store(t * F + f + i, partial(i, true));  // ends in a later stretch
    }
  }
}

// Piece k of the stretches, [k * kPiece, (k + 1) * kPiece), where every one of them leaves the
// same row unfinished (a run inside a hub row's chain): their tail partials combined in order
// into piece[k]. Other pieces are skipped and never read.
__global__ void __launch_bounds__(kThreads)
    spmm_csr_reduce_pieces_kernel(int64_t rows, int64_t F, int mode, int tpr, const int64_t* start_row,
                                  int64_t pieces, Partials tail, Partials piece) {
  const int lane = threadIdx.x % tpr;
  const int64_t k = int64_t(blockIdx.x) * (kThreads / tpr) + threadIdx.x / tpr;
  if (k >= pieces) return;
  const int64_t first = k * kPiece;
  const int64_t r = start_row[first + 1];
  if (r >= rows || start_row[first + kPiece] != r) return;
  for (int64_t f = int64_t(blockIdx.y) * tpr + lane; f < F; f += int64_t(gridDim.y) * tpr) {
    Partial p;
#pragma unroll 4
    for (int64_t s = first; s < first + kPiece; ++s) combine(mode, p, tail.load(s * F + f));
    piece.store(k * F + f, p);
  }
}

// A group a stretch t whose first row r = start_row[t] was begun earlier and ends here: combines
// the tail partials of the stretches before t that leave r unfinished (the chain [first, t)),
// by whole pieces where piece.value is not null, then head[t], in that order, and finishes r.
template <class I>
__global__ void __launch_bounds__(kThreads)
    spmm_csr_reduce_rows_kernel(const I* indptr, int64_t rows, DenseView<float> c, float alpha, float beta,
                                int mode, int64_t* arg, int tpr, const int64_t* start_row,
                                const int64_t* start_nnz, int64_t stretches, Partials head, Partials tail,
                                Partials piece) {
  const int lane = threadIdx.x % tpr;
  const int64_t t = int64_t(blockIdx.x) * (kThreads / tpr) + threadIdx.x / tpr;
  if (t >= stretches) return;
  const int64_t r = start_row[t];
  if (r >= rows || start_row[t + 1] == r || int64_t(indptr[r]) >= start_nnz[t]) return;
  // The first stretch that leaves r unfinished: the smallest s with start_row[s + 1] >= r.
  int64_t lo = 0, hi = t;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (start_row[mid + 1] >= r) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  const int64_t F = c.cols;
  for (int64_t f = int64_t(blockIdx.y) * tpr + lane; f < F; f += int64_t(gridDim.y) * tpr) {
    Partial p;
    int64_t s = lo;
    if (piece.value != nullptr) {  // every piece inside [lo, t) leaves r unfinished throughout
      for (; s < t && s % kPiece != 0; ++s) combine(mode, p, tail.load(s * F + f));
      for (; s + kPiece <= t; s += kPiece) combine(mode, p, piece.load(s / kPiece * F + f));
    }
#pragma unroll 4
    for (; s < t; ++s) combine(mode, p, tail.load(s * F + f));
    combine(mode, p, head.load(t * F + f));
    finish(p, alpha, beta, c.data + r * c.ld + f, arg != nullptr ? arg + r * F + f : nullptr);
  }
}

// mean's last pass: C[r, f] = alpha * (sums[r, f] / entries(r)) + beta * C[r, f], an empty row's
// mean 0 (as the host's). sums may be C itself (beta == 0): each element is read, then written,
// by one thread.
template <class I>
__global__ void __launch_bounds__(kThreads)
    spmm_mean_finish_kernel(const I* indptr, int64_t rows, DenseView<const float> sums, DenseView<float> c,
                            float alpha, float beta) {
  const int64_t F = c.cols, total = rows * F;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < total; i += int64_t(gridDim.x) * kThreads) {
    const int64_t r = i / F, f = i - r * F;
    const int64_t entries = int64_t(indptr[r + 1]) - int64_t(indptr[r]);
    const float mean = entries > 0 ? sums.data[r * sums.ld + f] * (1.0f / float(entries)) : 0.0f;
    const float value = __fmul_rn(alpha, mean);
    float* out = c.data + r * c.ld + f;
    *out = beta == 0.0f ? value : __fadd_rn(value, __fmul_rn(beta, *out));
  }
}

template <class V, class I, int VEC>
void launch_reduce(const dim3& grid, cudaStream_t stream, const CsrView<V, I>& a, DenseView<const V> b,
                   DenseView<float> c, float alpha, float beta, int mode, int64_t* arg, int tpr,
                   const int64_t* start_row, const int64_t* start_nnz, int64_t stretches, const Partials& head,
                   const Partials& tail) {
  spmm_csr_reduce_kernel<V, I, VEC><<<grid, kThreads, 0, stream>>>(a, b, c, alpha, beta, mode, arg, tpr, start_row,
                                                                   start_nnz, stretches, head, tail);
}

}  // namespace

template <class V, class I>
void spmm_csr_reduce(Context& ctx, const CsrView<V, I>& a, DenseView<const V> b, DenseView<float> c,
                     float alpha, float beta, SpmmReduce reduce, int64_t* arg) {
  TSR_CHECK(reduce == SpmmReduce::max || reduce == SpmmReduce::min,
            "spmm_csr_reduce: max or min (sum and mean run in the SpMM kernels)");
  TSR_CHECK(arg == nullptr || device_memory_of(arg, ctx.device()),
            "spmm: the arg output must be in device memory (of the context's device) when A is");
  if (a.rows == 0 || c.cols == 0) return;
  const int64_t F = c.cols;
  // Four features a lane in one 16- (f32) or 8-byte gather where B's rows allow it, and where
  // groups are a whole warp (F > 64) or rows are long: groups of 8 lanes share a warp at F = 32,
  // and short rows end in most batches, at different points for each group (the warp runs them
  // in turn). On the H200 at F = 32, max: products-like (rows of 54 on average) 4.9 ms with
  // four, 5.5 with one; arxiv-like (rows of 7) 0.22 with four, 0.17 with one. Lanes up to a
  // warp, at least 4, so that a row's entries load 4 at a time.
  const bool four = F >= 16 && F % 4 == 0 && b.ld % 4 == 0 &&
                    reinterpret_cast<uintptr_t>(b.data) % (4 * sizeof(V)) == 0 &&
                    (F > 64 || a.nnz >= 32 * a.rows);
  const int vec = four ? 4 : 1;
  int tpr = 4;
  while (tpr < kWarp && int64_t(tpr) * vec < F) tpr *= 2;
  const int64_t tiles = (F + int64_t(tpr) * vec - 1) / (int64_t(tpr) * vec);
  // Stretches of the merge path, a power of two in [32, 4096] items: enough groups to fill the
  // GPU twice (132 SMs x 2048 threads), and at least sqrt(path) / 8 items, so that a hub row's
  // chain of partials stays short.
  const int64_t path = a.rows + a.nnz;
  const double fill = double(path) * double(tpr) / (2.0 * 132.0 * 2048.0);
  const double least = std::max(fill, std::sqrt(double(path)) / 8.0);
  int64_t ipt = 32;
  while (ipt < 4096 && double(ipt) < least) ipt *= 2;
  const auto stream = static_cast<cudaStream_t>(ctx.stream());
  const int mode = reduce == SpmmReduce::max ? kMax : kMin;
  const unsigned tiles_y = unsigned(tiles < 65535 ? tiles : 65535);
  const auto launch = [&](const dim3& grid, const int64_t* start_row, const int64_t* start_nnz, int64_t groups,
                          const Partials& head, const Partials& tail) {
    if (four) {
      launch_reduce<V, I, 4>(grid, stream, a, b, c, alpha, beta, mode, arg, tpr, start_row, start_nnz, groups,
                             head, tail);
    } else {
      launch_reduce<V, I, 1>(grid, stream, a, b, c, alpha, beta, mode, arg, tpr, start_row, start_nnz, groups,
                             head, tail);
    }
  };
  // Rows no longer than a stretch: a group a row, no partials (a matrix of 400k nonzeros in rows
  // of about 20 took 0.083 ms so against 0.106 in stretches on the H200). Under 2^31 nonzeros,
  // so that positions in a row fit the kernel's 32 bits even where the hint is stale.
  const int64_t longest = max_row_length_hinted(ctx, a);
  if (longest <= ipt && a.nnz <= INT_MAX) {
    launch(dim3(grid_for(a.rows, kThreads / tpr), tiles_y), nullptr, nullptr, a.rows, Partials{}, Partials{});
    TSR_CUDA_CHECK_LAUNCH("spmm_csr_reduce (whole rows)");
    return;
  }
  const int64_t stretches = (path + ipt - 1) / ipt;
  // Pieces only where a row may span a whole one (a row of over (kPiece - 1) stretches' items).
  const int64_t pieces = longest >= (kPiece - 1) * ipt ? stretches / kPiece : 0;
  // Workspace: stretch starts (stretches + 1 of each), then head, tail and piece partials.
  const auto padded = [](size_t bytes) { return (bytes + 255) / 256 * 256; };
  const size_t starts_bytes = padded(size_t(stretches + 1) * sizeof(int64_t));
  const auto partial_bytes = [&](int64_t count) {
    const size_t slots = size_t(count) * size_t(F);
    return padded(slots * sizeof(float)) + padded(slots * sizeof(int64_t));
  };
  auto* base = static_cast<unsigned char*>(
      ctx.workspace(2 * starts_bytes + 2 * partial_bytes(stretches) + partial_bytes(pieces)));
  auto* start_row = reinterpret_cast<int64_t*>(base);
  auto* start_nnz = reinterpret_cast<int64_t*>(base + starts_bytes);
  unsigned char* at = base + 2 * starts_bytes;
  const auto partials = [&](int64_t count) {
    const size_t slots = size_t(count) * size_t(F);
    Partials p{reinterpret_cast<float*>(at), reinterpret_cast<int64_t*>(at + padded(slots * sizeof(float)))};
    at += partial_bytes(count);
    return p;
  };
  const Partials head = partials(stretches), tail = partials(stretches);
  const Partials piece = pieces > 0 ? partials(pieces) : Partials{};
  path_starts_kernel<I><<<grid_for(stretches + 1, kThreads), kThreads, 0, stream>>>(
      a.indptr, a.rows, a.nnz, ipt, stretches, start_row, start_nnz, nullptr, 0);
  TSR_CUDA_CHECK_LAUNCH("spmm_csr_reduce (stretch starts)");
  launch(dim3(grid_for(stretches, kThreads / tpr), tiles_y), start_row, start_nnz, stretches, head, tail);
  TSR_CUDA_CHECK_LAUNCH("spmm_csr_reduce");
  // The combining kernels take one feature a lane.
  int lanes = 4;
  while (lanes < kWarp && lanes < F) lanes *= 2;
  const int64_t feature_tiles = (F + lanes - 1) / lanes;
  const unsigned feature_tiles_y = unsigned(feature_tiles < 65535 ? feature_tiles : 65535);
  if (pieces > 0) {
    spmm_csr_reduce_pieces_kernel<<<dim3(grid_for(pieces, kThreads / lanes), feature_tiles_y), kThreads, 0,
                                    stream>>>(a.rows, F, mode, lanes, start_row, pieces, tail, piece);
    TSR_CUDA_CHECK_LAUNCH("spmm_csr_reduce (pieces of long rows)");
  }
  spmm_csr_reduce_rows_kernel<I><<<dim3(grid_for(stretches, kThreads / lanes), feature_tiles_y), kThreads, 0,
                                   stream>>>(a.indptr, a.rows, c, alpha, beta, mode, arg, lanes, start_row,
                                             start_nnz, stretches, head, tail, piece);
  TSR_CUDA_CHECK_LAUNCH("spmm_csr_reduce (rows across stretches)");
}

template <class I>
void spmm_mean_finish(Context& ctx, const I* indptr, int64_t rows, DenseView<const float> sums, DenseView<float> c,
                      float alpha, float beta) {
  if (rows == 0 || c.cols == 0) return;
  const int64_t total = rows * c.cols;
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, 132 * 16);
  spmm_mean_finish_kernel<I><<<unsigned(blocks), kThreads, 0, static_cast<cudaStream_t>(ctx.stream())>>>(
      indptr, rows, sums, c, alpha, beta);
  TSR_CUDA_CHECK_LAUNCH("spmm_mean_finish");
}

template void spmm_mean_finish(Context&, const int32_t*, int64_t, DenseView<const float>, DenseView<float>, float,
                               float);
template void spmm_mean_finish(Context&, const int64_t*, int64_t, DenseView<const float>, DenseView<float>, float,
                               float);

#define TSR_INSTANTIATE_SPMM_REDUCE_CUDA(V, I)                                                 \
  template void spmm_csr_reduce(Context&, const CsrView<V, I>&, DenseView<const V>,            \
                                DenseView<float>, float, float, SpmmReduce, int64_t*);
TSR_FOR_EACH_COMPUTE_TYPE(TSR_INSTANTIATE_SPMM_REDUCE_CUDA)

}  // namespace tessera::ops::cuda
