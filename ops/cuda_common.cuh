// Device-side helpers shared by the CUDA kernels: loads of every value type as f32, warp sums.
#pragma once

#include <climits>
#include <cstdint>
#include <type_traits>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "core/dtype.h"
#include "core/error.h"

namespace tessera::ops::cuda {

constexpr int kWarp = 32;
/// Row gathers of B each thread of an SpMM gather loop issues before the first is used
/// (memory-level parallelism for latency-bound gathers; 16 with 1-2 wide loads measured slower
/// on the H100, the registers cost occupancy).
constexpr int kGathersInFlight = 8;

__device__ __forceinline__ float load_f32(float v) { return v; }
__device__ __forceinline__ float load_f32(bf16 v) { return __uint_as_float(uint32_t(v.bits) << 16); }
__device__ __forceinline__ float load_f32(f16 v) { return __half2float(__ushort_as_half(v.bits)); }

/// Sum over the 32 lanes of a warp; every lane receives the total (fixed order: deterministic).
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

/// VEC consecutive elements of p in one 2/4/8/16-byte load (two of 16 for f32 at VEC = 8), as
/// loaded: f32 one to a register, 16-bit types two, converted to f32 by (i) at use. Gathers held
/// in flight keep this form (f16 unpacked at the load takes registers of its own: the merge
/// path's f16 vec = 4 form spilled 88 bytes that way, 32 this way, as bf16 does either way). p is
/// aligned to VEC * sizeof(V) (checked on the host).
template <int VEC, class V>
struct PackedVec {
  static_assert(sizeof(V) == 4 || sizeof(V) == 2, "f32 or a 16-bit type");
  static constexpr int kWords = sizeof(V) == 4 ? VEC : (VEC + 1) / 2;
  static_assert(kWords == 1 || kWords == 2 || kWords == 4 || kWords == 8, "1 to 8 words");
  uint32_t w[kWords];

  __device__ __forceinline__ void load(const V* p) { load_words<false>(p); }
  /// load() through the read-only data path (ld.global.nc): p is in global memory and nothing
  /// writes it while the kernel runs. Also tells the compiler the space of a pointer it cannot
  /// trace (one made by offset_by_product), which it would otherwise load with generic LDs.
  __device__ __forceinline__ void load_read_only(const V* p) { load_words<true>(p); }
  /// The first `width` (< VEC) elements of p, the rest 0: the ragged end of a feature row.
  __device__ __forceinline__ void load_partial(const V* p, int width) {
    using Bits = std::conditional_t<sizeof(V) == 4, uint32_t, uint16_t>;
    const Bits* e = reinterpret_cast<const Bits*>(p);
    set_zero();
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      if (i < width) {
        if constexpr (sizeof(V) == 4) {
          w[i] = e[i];
        } else {
          w[i / 2] |= uint32_t(e[i]) << (16 * (i % 2));
        }
      }
    }
  }
  /// Every element 0 (a vector that is not loaded: past a batch's last edge, past F).
  __device__ __forceinline__ void set_zero() {
#pragma unroll
    for (int q = 0; q < kWords; ++q) w[q] = 0u;
  }
  /// Element i as f32 (i a compile-time constant once unrolled).
  __device__ __forceinline__ float operator()(int i) const {
    if constexpr (sizeof(V) == 4) {
      return __uint_as_float(w[i]);
    } else if constexpr (std::is_same_v<V, bf16>) {
      return __uint_as_float(i % 2 == 0 ? w[i / 2] << 16 : w[i / 2] & 0xffff0000u);
    } else {
      V h;
      h.bits = uint16_t(w[i / 2] >> (16 * (i % 2)));
      return load_f32(h);
    }
  }

 private:
  template <class T, bool kReadOnly>
  __device__ __forceinline__ static T load_one(const void* p) {
    if constexpr (kReadOnly) {
      return __ldg(static_cast<const T*>(p));
    } else {
      return *static_cast<const T*>(p);
    }
  }
  template <bool kReadOnly>
  __device__ __forceinline__ void load_words(const V* p) {
    if constexpr (kWords >= 4) {
#pragma unroll
      for (int q = 0; q < kWords / 4; ++q) {
        const uint4 v = load_one<uint4, kReadOnly>(reinterpret_cast<const uint4*>(p) + q);
        w[4 * q] = v.x, w[4 * q + 1] = v.y, w[4 * q + 2] = v.z, w[4 * q + 3] = v.w;
      }
    } else if constexpr (kWords == 2) {
      const uint2 v = load_one<uint2, kReadOnly>(p);
      w[0] = v.x, w[1] = v.y;
    } else if constexpr (sizeof(V) == 4 || VEC == 2) {
      w[0] = load_one<unsigned int, kReadOnly>(p);
    } else {
      w[0] = load_one<unsigned short, kReadOnly>(p);
    }
  }
};

/// VEC consecutive elements of p as f32 (PackedVec's load, unpacked at once).
template <int VEC, class V>
__device__ __forceinline__ void load_vec(const V* p, float (&out)[VEC]) {
  PackedVec<VEC, V> packed;
  packed.load(p);
#pragma unroll
  for (int i = 0; i < VEC; ++i) out[i] = packed(i);
}

/// Row j of a dense operand whose row 0 (at this thread's first feature) is at `base`, rows
/// ld_bytes apart. int32 indices take one 32 x 32 -> 64-bit multiply-add, plus one for the
/// stride's high word, so any stride works (a valid row index is not negative).
template <class V, class I>
__device__ __forceinline__ const V* dense_row(const char* base, I j, uint64_t ld_bytes) {
  if constexpr (sizeof(I) == 4) {
    return reinterpret_cast<const V*>(base + uint64_t(uint32_t(j)) * ld_bytes);
  } else {
    return reinterpret_cast<const V*>(base + j * int64_t(ld_bytes));
  }
}

/// base + a * b with a 32 x 32 -> 64-bit multiply-add. ptxas at 231b5d7 emits it as
/// IMAD.WIDE.U32 + IADD3 + IMAD.X per gathered row, and the pointer it returns has no known
/// space (loads through it must say global: PackedVec::load_read_only). The plain expression
/// (one IMAD.WIDE.U32 with __ldg gathers; branch wip-plain-gather-address) measured no faster
/// on the H200 (bench/RESULTS.md, session 18).
__device__ __forceinline__ const char* offset_by_product(const char* base, uint32_t a, uint32_t b) {
  uint64_t address;
  asm("mad.wide.u32 %0, %1, %2, %3;" : "=l"(address) : "r"(a), "r"(b), "l"(reinterpret_cast<uint64_t>(base)));
  return reinterpret_cast<const char*>(address);
}

template <int VEC>
__device__ __forceinline__ void store_vec(float* p, const float (&v)[VEC]) {
  if constexpr (VEC == 8) {  // two 16-byte stores (p is 16-byte aligned)
    reinterpret_cast<float4*>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
    reinterpret_cast<float4*>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
  } else if constexpr (VEC == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  } else if constexpr (VEC == 2) {
    *reinterpret_cast<float2*>(p) = make_float2(v[0], v[1]);
  } else {
    *p = v[0];
  }
}

/// The first `width` (< VEC) elements of p as f32, the rest 0: the ragged end of a feature row.
template <int VEC, class V>
__device__ __forceinline__ void load_partial(const V* p, int width, float (&out)[VEC]) {
#pragma unroll
  for (int i = 0; i < VEC; ++i) out[i] = i < width ? load_f32(p[i]) : 0.0f;
}

/// Stores the first `width` (< VEC) elements of v at p: the ragged end of a feature row (static
/// indices, so v stays in registers).
template <int VEC>
__device__ __forceinline__ void store_partial(float* p, int width, const float (&v)[VEC]) {
#pragma unroll
  for (int i = 0; i < VEC - 1; ++i) {
    if (i < width) p[i] = v[i];
  }
}

/// Where the merge path of a CSR matrix (rows' ends and nonzeros; csr.merge_path, csr.nnz_split)
/// has its item `diag`: (row, consumed) with row + consumed = diag, such that rows [0, row) have
/// ended and nonzeros [0, consumed) have been consumed. A row end indptr[r + 1] == j comes before
/// nonzero j (which then belongs to a later row). A binary search over the rows.
template <class I>
__device__ void path_search(const I* indptr, int64_t rows, int64_t nnz, int64_t diag, int64_t* row,
                            int64_t* consumed) {
  int64_t lo = diag > nnz ? diag - nnz : 0, hi = diag < rows ? diag : rows;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (int64_t(indptr[mid + 1]) <= diag - mid - 1) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  *row = lo;
  *consumed = diag - lo;
}

/// Stretch starts of a merge path cut into stretches of per_stretch items, one thread a stretch:
/// (start_row[k], start_nnz[k]) = path_search at item k * per_stretch, so a hub row costs no
/// thread more than any other; entry `stretches` is (rows, nnz). Also zeroes `queue` (tiles
/// counters; may be null).
template <class I>
__global__ void path_starts_kernel(const I* indptr, int64_t rows, int64_t nnz, int64_t per_stretch,
                                   int64_t stretches, int64_t* start_row, int64_t* start_nnz,
                                   unsigned long long* queue, int64_t tiles) {
  const int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (queue != nullptr && k < tiles) queue[k] = 0;
  if (k < stretches) {
    path_search(indptr, rows, nnz, k * per_stretch, &start_row[k], &start_nnz[k]);
  } else if (k == stretches) {
    start_row[k] = rows, start_nnz[k] = nnz;
  }
}

/// The carries of a merge-path SpMM (csr.merge_path, csr.nnz_split): teams first, first + 1, ...
/// leave row r unfinished while start_row[t + 1] == r (start_row nondecreasing, teams + 1
/// entries). Returns the end of that chain: one load settles the common chain of one team, a
/// binary search a hub row's longer one.
__device__ __forceinline__ int64_t carry_chain_end(const int64_t* start_row, int64_t teams, int64_t first,
                                                   int64_t r) {
  int64_t last = first + 1;
  if (last < teams && start_row[last + 1] == r) {
    int64_t lo = last + 1, hi = teams;  // the smallest t in [lo, teams] with start_row[t + 1] > r
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (start_row[mid + 1] > r) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    last = lo;
  }
  return last;
}

/// Shuffle mask of the aligned team of `team` lanes (a power of two <= 32) holding this thread.
__device__ __forceinline__ unsigned team_mask(int team) {
  const int warp_lane = threadIdx.x % kWarp;
  return team == kWarp ? 0xffffffffu : (((1u << team) - 1u) << (warp_lane / team * team));
}

/// Sums dot[u] over the team's `tpe` lanes (a power of two, 4..32; mask: the team's lanes) and
/// leaves edge u's total on lane u, u < 4 (the other lanes hold copies: lane l has edge l % 4's).
/// A reduce-scatter: the first two butterfly steps each send half the edges and keep the other half
/// (2 + 1 shuffles instead of 4 + 4), the rest sum whole values. Fixed order: deterministic bits.
__device__ __forceinline__ float team_sum_by_edge(float (&dot)[4], int lane, int tpe, unsigned mask) {
  const bool upper = lane & 2;  // keeps edges 2, 3; sends 0, 1
  float keep0 = upper ? dot[2] : dot[0], send0 = upper ? dot[0] : dot[2];
  float keep1 = upper ? dot[3] : dot[1], send1 = upper ? dot[1] : dot[3];
  keep0 += __shfl_xor_sync(mask, send0, 2, tpe);
  keep1 += __shfl_xor_sync(mask, send1, 2, tpe);
  const bool odd = lane & 1;  // keeps the odd edge of the pair
  float sum = odd ? keep1 : keep0;
  sum += __shfl_xor_sync(mask, odd ? keep0 : keep1, 1, tpe);
  for (int offset = 4; offset < tpe; offset *= 2) sum += __shfl_xor_sync(mask, sum, offset, tpe);
  return sum;  // edge 2 * bit 1 + bit 0 of the lane, that is lane % 4
}

/// Row ends of a CSR matrix for a team walking rows in increasing order: indptr[r + 1] read by
/// every lane of the team (one broadcast load, an L1 hit mostly), the next row's end one row ahead
/// of its use. No shuffles, so the walk may diverge between the teams of a warp (a shuffle there
/// costs a convergence check); StretchRowEnds below is its 32-bit form.
template <class I>
class RowEnds {
 public:
  /// rows < 0: nothing is loaded and every end reads INT64_MAX.
  __device__ RowEnds(const I* indptr, int64_t rows, int64_t first_row)
      : indptr_(indptr), rows_(rows), row_(first_row), current_(load(first_row)),
        next_(load(first_row + 1)) {}
  /// indptr[row + 1] of the current row, or INT64_MAX past the last row.
  __device__ int64_t current() const { return current_; }
  /// Moves to the next row and returns its end.
  __device__ int64_t advance() {
    ++row_;
    current_ = next_;
    next_ = load(row_ + 1);
    return current_;
  }

 private:
  __device__ int64_t load(int64_t r) const { return r < rows_ ? int64_t(indptr_[r + 1]) : INT64_MAX; }
  const I* indptr_;
  int64_t rows_, row_, current_, next_;
};

/// The ends of a team's rows of a CSR matrix, as 32-bit offsets from the team's first nonzero
/// nnz0, for a team walking rows in increasing order (the SpMM merge path, the SDDMM edge
/// batches): indptr[r + 1] read by every lane of the team (one broadcast load, an L1 hit mostly)
/// one row ahead of its use. No shuffles: moving to the next row is control flow that diverges
/// between the teams of a warp, where a shuffle costs a convergence check. Rows past the matrix,
/// and ends beyond INT_MAX, read as INT_MAX (never reached: a team's run of nonzeros is shorter).
template <class I>
class StretchRowEnds {
 public:
  __device__ StretchRowEnds(const I* indptr, int64_t rows, int64_t row0, int64_t nnz0)
      : ends_(indptr + row0 + 1), rows_left_(rows - row0 < INT_MAX ? int(rows - row0) : INT_MAX),
        nnz0_(nnz0) {
    current_ = load(0);
    next_ = load(1);
  }
  /// The end of the team's current row (row0 + the number of advance() calls).
  __device__ int current() const { return current_; }
  /// Moves to the next row and returns its end.
  __device__ int advance() {
    ++row_;
    current_ = next_;
    next_ = load(row_ + 1);
    return current_;
  }

 private:
  __device__ int load(int r) const {
    if (r >= rows_left_) return INT_MAX;
    if constexpr (sizeof(I) == 4) {
      return int(ends_[r]) - int(nnz0_);  // both in [0, INT_MAX], the end not below nnz0
    } else {
      const int64_t end = int64_t(ends_[r]) - nnz0_;
      return end < INT_MAX ? int(end) : INT_MAX;
    }
  }
  const I* ends_;
  int rows_left_;
  int64_t nnz0_;
  int row_ = 0, current_ = 0, next_ = 0;
};

/// Blocks needed for n items at per_block items a block, checked against the grid limit.
inline unsigned grid_for(int64_t n, int64_t per_block) {
  const int64_t blocks = (n + per_block - 1) / per_block;
  TSR_CHECK(blocks <= int64_t(0x7fffffff), "a launch over ", n, " items needs ", blocks,
            " blocks, more than the grid allows");
  return unsigned(blocks);
}

}  // namespace tessera::ops::cuda
