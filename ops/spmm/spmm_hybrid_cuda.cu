// ELL and Hybrid SpMM on the GPU: spmm_ell_row_split and spmm_hybrid_fused.
//
// One kernel serves both. A launch takes a table of parts (an ELL or CSR matrix over local rows,
// with a row map to global rows); its blocks are dealt out to the parts in order, rpb local rows
// a block, tpr threads (a sub-warp) a row with vec features each, as in csr.row_split. ELL
// padding slots are skipped (never gathered). A plain ELL matrix is one part whose rows map to
// themselves, written directly. A Hybrid matrix's parts (hyb(c, k): c column ranges x k + 1
// width buckets, long rows split over several local rows) all go in one launch (up to
// kPartsPerLaunch parts; more take several), and a global row produced by several local rows is
// combined one of two ways (the schedule's `atomic` knob):
//   atomic=1  C is scaled by beta first, then every local row adds alpha * its sum with float
//             atomics. One pass, but the order of the additions (and so the bits) varies.
//   atomic=0  two passes, deterministic. Local rows ("slots") are sorted by global row (stable,
//             so a row's slots stay in part order); a row produced once is written directly, the
//             others write their partial sums to a scratch matrix, and a second kernel adds each
//             row's partials in slot order and applies beta. The sort costs O(slots) per call
//             and a host synchronisation (to size the scratch matrix, which extends the
//             context's workspace; growing the workspace synchronises too).
#include <algorithm>
#include <cstdint>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>
#include <type_traits>
#include <vector>

#include "core/cuda_check.h"
#include "core/error.h"
#include "ops/cuda_common.cuh"
#include "ops/cuda_kernels.h"

namespace tessera::ops::cuda {

namespace {

constexpr int kMaxThreads = 512;
// Parts one launch takes: the table is a kernel parameter (48 x 64 bytes, under the 4 KiB that
// every CUDA version accepts). hyb(c, k) has c * (k + 1) parts at most.
constexpr int kPartsPerLaunch = 48;

template <class V, class I>
struct PartSlice {
  const I* indptr = nullptr;   // CSR part: [rows + 1]; null for an ELL part
  const I* indices = nullptr;  // CSR: [nnz]; ELL: [rows * width], kPadIndex<I> marks padding
  const V* values = nullptr;
  const I* row_map = nullptr;  // global row of each local row; null: local row = global row
  int64_t rows = 0, width = 0;
  int64_t first_block = 0;  // the part's first blockIdx.x
  int64_t first_slot = 0;   // position of its local row 0 among all parts' local rows
};

template <class V, class I>
struct PartTable {
  PartSlice<V, I> part[kPartsPerLaunch];
  int count = 0;
};

// Where a local row's sum goes.
enum class Output { direct, atomic, slots };

template <class V, class I, int VEC, Output OUT>
__global__ void __launch_bounds__(kMaxThreads)
    spmm_parts_kernel(const __grid_constant__ PartTable<V, I> table, DenseView<const V> b,
                      DenseView<float> c, float alpha, float beta, int tpr, const I* dest,
                      float* partials, int64_t partials_ld) {
  int p = 0;  // block-uniform: the part whose block range holds blockIdx.x
  while (p + 1 < table.count && int64_t(blockIdx.x) >= table.part[p + 1].first_block) ++p;
  const PartSlice<V, I>& part = table.part[p];
  const int lane = threadIdx.x % tpr;
  const int rows_per_block = blockDim.x / tpr;
  const int64_t local = (int64_t(blockIdx.x) - part.first_block) * rows_per_block + threadIdx.x / tpr;
  if (local >= part.rows) return;  // whole groups leave together: tpr divides the warp
  const unsigned group_mask = team_mask(tpr);
  int64_t begin = local * part.width, end = begin + part.width;
  if (part.indptr) begin = part.indptr[local], end = part.indptr[local + 1];
  const int64_t row = part.row_map ? int64_t(part.row_map[local]) : local;
  float* out = c.data + row * c.ld;
  bool partial = false;  // out is a row of the scratch matrix (no beta)
  if constexpr (OUT == Output::slots) {
    const int64_t d = dest[part.first_slot + local];
    if (d >= 0) out = partials + d * partials_ld, partial = true;
  }
  const int64_t F = c.cols;
  const int64_t tile = int64_t(tpr) * VEC;
  for (int64_t f0 = int64_t(blockIdx.y) * tile; f0 < F; f0 += int64_t(gridDim.y) * tile) {
    const int64_t f = f0 + int64_t(lane) * VEC;
    const int width = f >= F ? 0 : (F - f >= VEC ? VEC : int(F - f));
    float acc[VEC] = {};
    for (int64_t e0 = begin; e0 < end; e0 += tpr) {
      // The group loads tpr (column, value) pairs and hands them out by shuffle.
      int64_t col = -1;
      float val = 0.0f;
      if (e0 + lane < end) {
        col = int64_t(part.indices[e0 + lane]);
        val = load_f32(part.values[e0 + lane]);
      }
      if (__ballot_sync(group_mask, col >= 0) == 0) continue;  // padding only (ELL rows' tails)
      const int batch = end - e0 < tpr ? int(end - e0) : tpr;
      int k = 0;
      for (; k + kGathersInFlight <= batch; k += kGathersInFlight) {
        // The gathers kept packed until the products (16-bit rows widened at the load spilled).
        PackedVec<VEC, V> x[kGathersInFlight];
        float v[kGathersInFlight];
#pragma unroll
        for (int u = 0; u < kGathersInFlight; ++u) {
          const int64_t j = __shfl_sync(group_mask, static_cast<long long>(col), k + u, tpr);
          v[u] = __shfl_sync(group_mask, val, k + u, tpr);
          if (j < 0 || width == 0) {  // padding (never gathered), or past F
            x[u].set_zero();
          } else if (width == VEC) {
            x[u].load_read_only(b.data + j * b.ld + f);
          } else {
            x[u].load_partial(b.data + j * b.ld + f, width);
          }
        }
#pragma unroll
        for (int u = 0; u < kGathersInFlight; ++u) {
#pragma unroll
          for (int i = 0; i < VEC; ++i) acc[i] += v[u] * x[u](i);
        }
      }
      for (; k < batch; ++k) {
        const int64_t j = __shfl_sync(group_mask, static_cast<long long>(col), k, tpr);
        const float v = __shfl_sync(group_mask, val, k, tpr);
        if (j < 0 || width == 0) continue;
        float x[VEC];
        if (width == VEC) {
          load_vec<VEC>(b.data + j * b.ld + f, x);
        } else {
          load_partial<VEC>(b.data + j * b.ld + f, width, x);
        }
#pragma unroll
        for (int i = 0; i < VEC; ++i) acc[i] += v * x[i];
      }
    }
    if (width == 0) continue;
    if constexpr (OUT == Output::atomic) {
      for (int i = 0; i < width; ++i) atomicAdd(out + f + i, alpha * acc[i]);
    } else if (width == VEC) {  // partial rows are padded to 4 floats: aligned too
      float o[VEC];
      const bool read_c = !partial && beta != 0.0f;
      if (read_c) load_vec<VEC>(out + f, o);
#pragma unroll
      for (int i = 0; i < VEC; ++i) o[i] = read_c ? alpha * acc[i] + beta * o[i] : alpha * acc[i];
      store_vec<VEC>(out + f, o);
    } else {
      for (int i = 0; i < width; ++i) {
        out[f + i] = partial || beta == 0.0f ? alpha * acc[i] : alpha * acc[i] + beta * out[f + i];
      }
    }
  }
}

// Rows of C not written by a direct slot. row_first null: every row (C = beta * C, the atomic
// mode's first step). Otherwise row r owns sorted slots [row_first[r], row_first[r + 1]): none
// -> C = beta * C; one -> written directly already, left alone; several -> C = (sum of its
// partials, in slot order) + beta * C. beta == 0 never reads C.
template <class I>
__global__ void finish_rows_kernel(DenseView<float> c, float beta, const I* row_first,
                                   const I* rank, const float* partials, int64_t partials_ld) {
  const int64_t row = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
  if (row >= c.rows) return;
  int64_t n = 0, first = 0;
  if (row_first) {
    n = int64_t(row_first[row + 1]) - int64_t(row_first[row]);
    if (n == 1) return;
    if (n > 1) first = int64_t(rank[row_first[row]]);
  }
  float* crow = c.data + row * c.ld;
  const float* p = partials + first * partials_ld;
  for (int64_t f = threadIdx.x; f < c.cols; f += blockDim.x) {
    // kLanes running sums (partial q into sum q % kLanes) keep that many loads in flight for rows
    // split into many pieces; they meet in a fixed order, so the bits do not vary.
    constexpr int kLanes = 8;
    float sums[kLanes] = {};
    int64_t q = 0;
    for (; q + kLanes <= n; q += kLanes) {
#pragma unroll
      for (int u = 0; u < kLanes; ++u) sums[u] += p[(q + u) * partials_ld + f];
    }
    for (int u = 0; q < n; ++q, ++u) sums[u] += p[q * partials_ld + f];
#pragma unroll
    for (int width = kLanes / 2; width > 0; width /= 2) {
#pragma unroll
      for (int u = 0; u < width; ++u) sums[u] += sums[u + width];
    }
    crow[f] = beta == 0.0f ? sums[0] : sums[0] + beta * crow[f];
  }
}

// keys[slot] = global row, values[slot] = slot, for the parts of one table (blockIdx.y = part).
template <class V, class I>
__global__ void slot_rows_kernel(const __grid_constant__ PartTable<V, I> table, I* keys, I* slots) {
  const PartSlice<V, I>& part = table.part[blockIdx.y];
  for (int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; r < part.rows;
       r += int64_t(gridDim.x) * blockDim.x) {
    keys[part.first_slot + r] = part.row_map ? part.row_map[r] : I(r);
    slots[part.first_slot + r] = I(part.first_slot + r);
  }
}

// row_first[r] = the first sorted position whose row is >= r, for r in [0, rows].
template <class I>
__global__ void row_first_kernel(const I* sorted_rows, int64_t n, int64_t rows, I* row_first) {
  const int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r > rows) return;
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (int64_t(sorted_rows[mid]) < r) lo = mid + 1; else hi = mid;
  }
  row_first[r] = I(lo);
}

// shared[i] = 1 when sorted slot i's row has several slots.
template <class I>
__global__ void shared_flags_kernel(const I* sorted_rows, int64_t n, const I* row_first, I* shared) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int64_t r = sorted_rows[i];
  shared[i] = I(row_first[r + 1] - row_first[r] > 1);
}

// dest[slot]: its partial row (the rank among shared slots) or -(global row) - 1 (direct).
template <class I>
__global__ void slot_dest_kernel(const I* sorted_rows, const I* sorted_slots, const I* shared,
                                 const I* rank, int64_t n, I* dest) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  dest[sorted_slots[i]] = shared[i] ? rank[i] : I(-int64_t(sorted_rows[i]) - 1);
}

// Bytes of count Ts in the scratch, rounded up to 256 so every array stays aligned.
template <class T>
size_t padded_bytes(int64_t count) {
  return (size_t(count) * sizeof(T) + 255) / 256 * 256;
}
template <class T>
T* carve(char*& cursor, int64_t count) {
  T* p = reinterpret_cast<T*>(cursor);
  cursor += padded_bytes<T>(count);
  return p;
}

// The tables of a list of parts (kPartsPerLaunch each), with blocks of rpb local rows.
template <class V, class I>
std::vector<PartTable<V, I>> make_tables(const std::vector<PartSlice<V, I>>& parts, int rpb) {
  std::vector<PartTable<V, I>> tables;
  int64_t slot = 0;
  for (const PartSlice<V, I>& part : parts) {
    if (part.rows == 0) continue;
    if (tables.empty() || tables.back().count == kPartsPerLaunch) tables.emplace_back();
    PartTable<V, I>& t = tables.back();
    PartSlice<V, I> s = part;
    s.first_block = t.count == 0 ? 0
                                 : t.part[t.count - 1].first_block +
                                       (t.part[t.count - 1].rows + rpb - 1) / rpb;
    s.first_slot = slot;
    slot += part.rows;
    t.part[t.count++] = s;
  }
  return tables;
}

template <class V, class I>
int64_t blocks_of(const PartTable<V, I>& t, int rpb) {
  const PartSlice<V, I>& last = t.part[t.count - 1];
  return last.first_block + (last.rows + rpb - 1) / rpb;
}

template <class V, class I, Output OUT>
void launch_tables(Context& ctx, const std::vector<PartTable<V, I>>& tables, DenseView<const V> b,
                   DenseView<float> c, float alpha, float beta, int tpr, int rpb, int vec,
                   const I* dest = nullptr, float* partials = nullptr, int64_t partials_ld = 0) {
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream());
  for (const PartTable<V, I>& t : tables) {
    const int64_t feature_tiles = (c.cols + int64_t(tpr) * vec - 1) / (int64_t(tpr) * vec);
    const dim3 grid(grid_for(blocks_of(t, rpb), 1),
                    unsigned(feature_tiles < 65535 ? feature_tiles : 65535));
    const auto go = [&](auto kernel) {
      kernel<<<grid, tpr * rpb, 0, stream>>>(t, b, c, alpha, beta, tpr, dest, partials, partials_ld);
    };
    switch (vec) {
      case 1: go(spmm_parts_kernel<V, I, 1, OUT>); break;
      case 2: go(spmm_parts_kernel<V, I, 2, OUT>); break;
      case 4: go(spmm_parts_kernel<V, I, 4, OUT>); break;
      default: TSR_FAIL("spmm (ELL/Hybrid): vec = ", vec, " must be 1, 2 or 4");
    }
    TSR_CUDA_CHECK_LAUNCH("spmm_parts_kernel");
  }
}

template <class V>
void check_knobs(const char* what, DenseView<const V> b, DenseView<float> c, int tpr, int rpb,
                 int vec) {
  TSR_CHECK(tpr >= 1 && tpr <= kWarp && (tpr & (tpr - 1)) == 0, what, ": tpr = ", tpr,
            " must be a power of two in [1, 32]");
  TSR_CHECK(tpr * rpb >= kWarp && tpr * rpb <= kMaxThreads, what, ": tpr * rpb = ", tpr * rpb,
            " threads per block; needs 32..", kMaxThreads);
  if (vec > 1) {
    const auto aligned = [&](const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; };
    TSR_CHECK(b.ld % vec == 0 && c.ld % vec == 0 && aligned(b.data, vec * sizeof(V)) &&
                  aligned(c.data, vec * sizeof(float)),
              what, ": vec=", vec, " needs B and C rows aligned to ", vec,
              " elements (leading dimensions ", b.ld, ", ", c.ld, ")");
  }
}

void finish_rows_launch(Context& ctx, DenseView<float> c, float beta, const void* row_first,
                        const void* rank, const float* partials, int64_t partials_ld, bool wide_index);

}  // namespace

template <class V, class I>
void spmm_ell_row_split(Context& ctx, const EllView<V, I>& a, DenseView<const V> b,
                        DenseView<float> c, float alpha, float beta, int tpr, int rpb, int vec) {
  check_knobs("spmm_ell_row_split", b, c, tpr, rpb, vec);
  if (a.rows == 0 || c.cols == 0) return;
  PartSlice<V, I> whole;
  whole.indices = a.indices;
  whole.values = a.values;
  whole.rows = a.rows;
  whole.width = a.width;
  launch_tables<V, I, Output::direct>(ctx, make_tables<V, I>({whole}, rpb), b, c, alpha, beta, tpr,
                                      rpb, vec);
}

template <class V, class I>
void spmm_hybrid_fused(Context& ctx, const Hybrid<V, I>& a, DenseView<const V> b,
                       DenseView<float> c, float alpha, float beta, int tpr, int rpb, int vec,
                       bool atomic) {
  check_knobs("spmm_hybrid_fused", b, c, tpr, rpb, vec);
  if (a.rows == 0 || c.cols == 0) return;
  std::vector<PartSlice<V, I>> parts;
  int64_t slots = 0;
  for (const HybridPart<V, I>& hp : a.parts) {
    PartSlice<V, I> s;
    s.row_map = hp.row_map.data();
    s.rows = hp.part_rows();
    if (const auto* csr = std::get_if<Csr<V, I>>(&hp.matrix)) {
      s.indptr = csr->indptr.data();
      s.indices = csr->indices.data();
      s.values = csr->values.data();
    } else {
      const Ell<V, I>& ell = std::get<Ell<V, I>>(hp.matrix);
      s.indices = ell.indices.data();
      s.values = ell.values.data();
      s.width = ell.width;
    }
    slots += s.rows;
    parts.push_back(s);
  }
  TSR_CHECK(fits_index<I>(slots), "spmm_hybrid_fused: the parts hold ", slots,
            " local rows in all, more than the index type holds (use int64 indices)");
  const std::vector<PartTable<V, I>> tables = make_tables(parts, rpb);
  constexpr bool kWide = sizeof(I) == 8;
  if (atomic || tables.empty()) {
    finish_rows_launch(ctx, c, beta, nullptr, nullptr, nullptr, 0, kWide);
    if (!tables.empty()) {
      launch_tables<V, I, Output::atomic>(ctx, tables, b, c, alpha, beta, tpr, rpb, vec);
    }
    return;
  }
  // Two passes. Scratch: keys, slots (unsorted and sorted), shared flags, ranks, dest, row_first,
  // CUB's temporary storage.
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream());
  int end_bit = 1;
  while (end_bit < 63 && (int64_t(1) << end_bit) <= a.rows) ++end_bit;
  size_t sort_bytes = 0, scan_bytes = 0;
  TSR_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, (const I*)nullptr, (I*)nullptr,
                                                 (const I*)nullptr, (I*)nullptr, slots, 0, end_bit, stream));
  TSR_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, scan_bytes, (I*)nullptr, (I*)nullptr,
                                               slots + 1, stream));
  const size_t cub_bytes = std::max(sort_bytes, scan_bytes);
  // The scratch layout: the same carve order from any base address.
  struct Scratch {
    I *keys, *slot_ids, *sorted_rows, *sorted_slots, *shared, *rank, *dest, *row_first;
    void* cub_temp;
    float* partials;  // after the CUB storage: [shared slots, partials_ld]
  };
  const auto layout = [&](void* base) {
    char* cursor = static_cast<char*>(base);
    Scratch w;
    w.keys = carve<I>(cursor, slots);
    w.slot_ids = carve<I>(cursor, slots);
    w.sorted_rows = carve<I>(cursor, slots);
    w.sorted_slots = carve<I>(cursor, slots);
    w.shared = carve<I>(cursor, slots + 1);
    w.rank = carve<I>(cursor, slots + 1);
    w.dest = carve<I>(cursor, slots);
    w.row_first = carve<I>(cursor, a.rows + 1);
    w.cub_temp = carve<char>(cursor, int64_t(cub_bytes));
    w.partials = reinterpret_cast<float*>(cursor);
    return w;
  };
  const size_t prep_bytes = 5 * padded_bytes<I>(slots) + 2 * padded_bytes<I>(slots + 1) +
                            padded_bytes<I>(a.rows + 1) + padded_bytes<char>(int64_t(cub_bytes));
  Scratch w = layout(ctx.workspace(prep_bytes));
  I* const keys = w.keys;
  I* const slot_ids = w.slot_ids;
  I* const sorted_rows = w.sorted_rows;
  I* const sorted_slots = w.sorted_slots;
  I* const shared = w.shared;
  I* const rank = w.rank;
  I* const dest = w.dest;
  I* const row_first = w.row_first;
  void* const cub_temp = w.cub_temp;
  for (const PartTable<V, I>& t : tables) {
    slot_rows_kernel<<<dim3(256, unsigned(t.count)), 256, 0, stream>>>(t, keys, slot_ids);
    TSR_CUDA_CHECK_LAUNCH("slot_rows_kernel");
  }
  size_t temp = cub_bytes;
  TSR_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(cub_temp, temp, keys, sorted_rows, slot_ids,
                                                 sorted_slots, slots, 0, end_bit, stream));
  row_first_kernel<<<grid_for(a.rows + 1, 256), 256, 0, stream>>>(sorted_rows, slots, a.rows, row_first);
  TSR_CUDA_CHECK_LAUNCH("row_first_kernel");
  shared_flags_kernel<<<grid_for(slots, 256), 256, 0, stream>>>(sorted_rows, slots, row_first, shared);
  TSR_CUDA_CHECK_LAUNCH("shared_flags_kernel");
  TSR_CUDA_CHECK(cudaMemsetAsync(shared + slots, 0, sizeof(I), stream));
  temp = cub_bytes;
  // rank[slots] = the number of shared slots (the scan over slots + 1 flags, the last one 0).
  TSR_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(cub_temp, temp, shared, rank, slots + 1, stream));
  slot_dest_kernel<<<grid_for(slots, 256), 256, 0, stream>>>(sorted_rows, sorted_slots, shared, rank,
                                                            slots, dest);
  TSR_CUDA_CHECK_LAUNCH("slot_dest_kernel");
  I shared_count = 0;
  TSR_CUDA_CHECK(cudaMemcpyAsync(&shared_count, rank + slots, sizeof(I), cudaMemcpyDeviceToHost, stream));
  TSR_CUDA_CHECK(cudaStreamSynchronize(stream));
  // The partial rows (padded to 4 floats so vector stores stay aligned) extend the scratch; a
  // workspace that grows keeps what the steps above wrote, at a new address.
  const int64_t partials_ld = (c.cols + 3) / 4 * 4;
  w = layout(ctx.workspace(prep_bytes + size_t(shared_count) * size_t(partials_ld) * sizeof(float)));
  launch_tables<V, I, Output::slots>(ctx, tables, b, c, alpha, beta, tpr, rpb, vec, w.dest,
                                     w.partials, partials_ld);
  finish_rows_launch(ctx, c, beta, w.row_first, w.rank, w.partials, partials_ld, kWide);
}

namespace {

void finish_rows_launch(Context& ctx, DenseView<float> c, float beta, const void* row_first,
                        const void* rank, const float* partials, int64_t partials_ld, bool wide_index) {
  if (c.rows == 0 || c.cols == 0) return;
  const dim3 block(32, 8);
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream());
  if (wide_index) {
    finish_rows_kernel<int64_t><<<grid_for(c.rows, 8), block, 0, stream>>>(
        c, beta, static_cast<const int64_t*>(row_first), static_cast<const int64_t*>(rank),
        partials, partials_ld);
  } else {
    finish_rows_kernel<int32_t><<<grid_for(c.rows, 8), block, 0, stream>>>(
        c, beta, static_cast<const int32_t*>(row_first), static_cast<const int32_t*>(rank),
        partials, partials_ld);
  }
  TSR_CUDA_CHECK_LAUNCH("finish_rows_kernel");
}

}  // namespace

void scale_rows(Context& ctx, DenseView<float> c, float beta) {
  finish_rows_launch(ctx, c, beta, nullptr, nullptr, nullptr, 0, false);
}

#define TSR_INSTANTIATE_SPMM_PARTS_CUDA(V, I)                                                      \
  template void spmm_ell_row_split(Context&, const EllView<V, I>&, DenseView<const V>,             \
                                   DenseView<float>, float, float, int, int, int);                 \
  template void spmm_hybrid_fused(Context&, const Hybrid<V, I>&, DenseView<const V>,               \
                                  DenseView<float>, float, float, int, int, int, bool);
TSR_FOR_EACH_COMPUTE_TYPE(TSR_INSTANTIATE_SPMM_PARTS_CUDA)

}  // namespace tessera::ops::cuda
