// Structural validation of device sparse matrices (CSR, BSR, ELL, Hybrid) without copying them to
// the host: one pass over the offsets and indices records the first offending position of each
// kind; the host reads back a few words and reports the first problem the way
// formats/validate.cpp does for host arrays.
#include <cstdint>

#include <string>
#include <type_traits>

#include "core/cuda_check.h"
#include "core/error.h"
#include "formats/sparse.h"
#include "formats/validate.h"
#include "ops/cuda_kernels.h"

namespace tessera::ops::cuda {

namespace {

// first[0]: first row r with indptr[r] > indptr[r + 1]; first[1]: first entry whose column is
// outside [0, cols). Both start at ~0 ("none") and only ever decrease (atomicMin).
template <class I>
__global__ void csr_first_violations(int64_t rows, int64_t cols, int64_t nnz, const I* indptr,
                                     const I* indices, unsigned long long* first) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; r < rows; r += stride) {
    if (indptr[r] > indptr[r + 1]) atomicMin(&first[0], (unsigned long long)r);
  }
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < nnz; e += stride) {
    const int64_t j = indices[e];
    if (j < 0 || j >= cols) atomicMin(&first[1], (unsigned long long)e);
  }
}

// *first = the first position i with values[i] outside [lo, hi) (and != pad when allow_pad).
template <class I>
__global__ void first_outside_kernel(const I* values, int64_t n, int64_t lo, int64_t hi,
                                     bool allow_pad, unsigned long long* first) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int64_t v = values[i];
    if ((v < lo || v >= hi) && !(allow_pad && v == int64_t(kPadIndex<I>))) {
      atomicMin(first, (unsigned long long)i);
    }
  }
}

// *longest = max over rows of indptr[r + 1] - indptr[r] (integer atomics: exact, order-free).
template <class I>
__global__ void csr_longest_row(int64_t rows, const I* indptr, unsigned long long* longest) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  unsigned long long local = 0;
  for (int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; r < rows; r += stride) {
    const int64_t len = int64_t(indptr[r + 1]) - int64_t(indptr[r]);
    local = len > int64_t(local) ? (unsigned long long)len : local;
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    const unsigned long long other = __shfl_xor_sync(0xffffffffu, local, offset);
    local = other > local ? other : local;
  }
  if (threadIdx.x % 32 == 0 && local > 0) atomicMax(longest, local);
}

template <class T>
T read_one(const T* device_ptr) {
  T value{};
  TSR_CUDA_CHECK(cudaMemcpy(&value, device_ptr, sizeof(T), cudaMemcpyDeviceToHost));
  return value;
}

}  // namespace

template <class V, class I>
void validate_csr(Context& ctx, const CsrView<V, I>& a, const char* what) {
  TSR_CHECK(a.indptr != nullptr, what, ": indptr is null");
  TSR_CHECK(a.nnz == 0 || a.indices != nullptr, what, ": null indices with nnz = ", a.nnz);
  ctx.synchronize();  // work queued earlier on ctx's stream may still be writing a
  const I first_offset = read_one(a.indptr);
  const I last_offset = read_one(a.indptr + a.rows);
  TSR_CHECK(first_offset == 0, what, ".indptr[0] = ", int64_t(first_offset), ", expected 0");
  TSR_CHECK(int64_t(last_offset) == a.nnz, what, ".indptr[", a.rows, "] = ", int64_t(last_offset),
            " does not match the entry count ", a.nnz);
  if (a.rows == 0 && a.nnz == 0) return;
  auto* first = static_cast<unsigned long long*>(ctx.workspace(2 * sizeof(unsigned long long)));
  const unsigned long long none[2] = {~0ull, ~0ull};
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream());
  TSR_CUDA_CHECK(cudaMemcpyAsync(first, none, sizeof none, cudaMemcpyHostToDevice, stream));
  const int64_t work = a.rows > a.nnz ? a.rows : a.nnz;
  const unsigned blocks = unsigned(work / 256 + 1 < 4096 ? work / 256 + 1 : 4096);
  csr_first_violations<<<blocks, 256, 0, stream>>>(a.rows, a.cols, a.nnz, a.indptr, a.indices, first);
  TSR_CUDA_CHECK_LAUNCH("csr_first_violations");
  unsigned long long found[2];
  TSR_CUDA_CHECK(cudaMemcpyAsync(found, first, sizeof found, cudaMemcpyDeviceToHost, stream));
  TSR_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (found[0] != ~0ull) {
    const int64_t r = int64_t(found[0]);
    TSR_FAIL(what, ".indptr is not monotone: [", r, "] = ", int64_t(read_one(a.indptr + r)), " > [",
             r + 1, "] = ", int64_t(read_one(a.indptr + r + 1)), " (device array)");
  }
  if (found[1] != ~0ull) {
    const int64_t e = int64_t(found[1]);
    TSR_FAIL(what, ".indices[", e, "] = ", int64_t(read_one(a.indices + e)), " is outside [0, ",
             a.cols, ") (device array)");
  }
}

// Throws naming what[i] when an element of values[0, n) lies outside [lo, hi) (padding allowed
// when allow_pad). Synchronises ctx.stream().
template <class I>
void check_range(Context& ctx, const I* values, int64_t n, int64_t lo, int64_t hi, bool allow_pad,
                 const std::string& what, const std::string& context) {
  if (n == 0) return;
  TSR_CHECK(values != nullptr, what, ": null array of ", n, " entries");
  auto* first = static_cast<unsigned long long*>(ctx.workspace(sizeof(unsigned long long)));
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream());
  TSR_CUDA_CHECK(cudaMemsetAsync(first, 0xff, sizeof(unsigned long long), stream));
  const unsigned blocks = unsigned(n / 256 + 1 < 4096 ? n / 256 + 1 : 4096);
  first_outside_kernel<<<blocks, 256, 0, stream>>>(values, n, lo, hi, allow_pad, first);
  TSR_CUDA_CHECK_LAUNCH("first_outside_kernel");
  unsigned long long found = 0;
  TSR_CUDA_CHECK(cudaMemcpyAsync(&found, first, sizeof found, cudaMemcpyDeviceToHost, stream));
  TSR_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (found == ~0ull) return;
  const int64_t i = int64_t(found);
  TSR_FAIL(what, "[", i, "] = ", int64_t(read_one(values + i)), " is outside [", lo, ", ", hi, ")",
           context, " (device array)");
}

template <class V, class I>
void validate_bsr(Context& ctx, const BsrView<V, I>& a) {
  TSR_CHECK(a.block_rows >= 1 && a.block_cols >= 1, "Bsr: block shape ", a.block_rows, "x",
            a.block_cols, " must be at least 1x1");
  check_index_capacity<I>(a.rows, a.cols, a.num_blocks, "Bsr");
  TSR_CHECK(a.num_blocks == 0 || a.values != nullptr, "Bsr: null values");
  const int64_t block_cols = (a.cols + a.block_cols - 1) / a.block_cols;
  validate_csr(ctx, CsrView<V, I>{a.block_row_count(), block_cols, a.num_blocks, a.indptr, a.indices,
                                  a.values, a.space},
               "Bsr");
}

template <class V, class I>
void validate_coo(Context& ctx, const CooView<V, I>& a) {
  check_index_capacity<I>(a.rows, a.cols, a.nnz, "Coo");
  TSR_CHECK(a.nnz == 0 || a.values != nullptr, "Coo: null values");
  check_range(ctx, a.row, a.nnz, 0, a.rows, false, "Coo.row", "");
  check_range(ctx, a.col, a.nnz, 0, a.cols, false, "Coo.col", "");
}

template <class V, class I>
void validate_ell(Context& ctx, const EllView<V, I>& a, const std::string& what) {
  TSR_CHECK(a.width >= 0, what, ": negative width ", a.width);
  check_index_capacity<I>(a.rows, a.cols, a.rows * a.width, what.c_str());
  TSR_CHECK(a.rows * a.width == 0 || a.values != nullptr, what, ": null values");
  check_range(ctx, a.indices, a.rows * a.width, 0, a.cols, true, what + ".indices", "");
}

template <class V, class I>
void validate_hybrid(Context& ctx, const Hybrid<V, I>& a) {
  check_index_capacity<I>(a.rows, a.cols, 0, "Hybrid");
  for (size_t p = 0; p < a.parts.size(); ++p) {
    const HybridPart<V, I>& part = a.parts[p];
    const std::string name = "Hybrid.parts[" + std::to_string(p) + "]";
    TSR_CHECK(0 <= part.col_begin && part.col_begin <= part.col_end && part.col_end <= a.cols, name,
              ": column range [", part.col_begin, ", ", part.col_end, ") is not inside [0, ", a.cols, ")");
    TSR_CHECK(part.row_map.space() == MemorySpace::device, name, ".row_map is not on the device");
    const std::string range = " (the part's column range)";
    std::visit(
        [&](const auto& m) {
          TSR_CHECK(m.space() == MemorySpace::device, name, ": matrix is not on the device");
          TSR_CHECK(m.rows == part.part_rows() && m.cols == a.cols, name, ": a ", m.rows, "x", m.cols,
                    " matrix with ", part.part_rows(), " mapped rows in a ", a.rows, "x", a.cols,
                    " Hybrid");
          using M = std::decay_t<decltype(m)>;
          if constexpr (std::is_same_v<M, Csr<V, I>>) {
            validate_csr(ctx, m.view(), (name + ".csr").c_str());
            check_range(ctx, m.indices.data(), m.nnz(), part.col_begin, part.col_end, false,
                        name + ".csr.indices", range);
          } else {
            validate_ell(ctx, m.view(), name + ".ell");
            check_range(ctx, m.indices.data(), m.rows * m.width, part.col_begin, part.col_end, true,
                        name + ".ell.indices", range);
          }
        },
        part.matrix);
    check_range(ctx, part.row_map.data(), part.part_rows(), 0, a.rows, false, name + ".row_map", "");
  }
}

template <class V, class I>
int64_t max_row_length(Context& ctx, const CsrView<V, I>& a) {
  if (a.rows == 0 || a.nnz == 0) return 0;
  auto* longest = static_cast<unsigned long long*>(ctx.workspace(sizeof(unsigned long long)));
  cudaStream_t stream = static_cast<cudaStream_t>(ctx.stream());
  TSR_CUDA_CHECK(cudaMemsetAsync(longest, 0, sizeof(unsigned long long), stream));
  const unsigned blocks = unsigned(a.rows / 256 + 1 < 2048 ? a.rows / 256 + 1 : 2048);
  csr_longest_row<<<blocks, 256, 0, stream>>>(a.rows, a.indptr, longest);
  TSR_CUDA_CHECK_LAUNCH("csr_longest_row");
  unsigned long long found = 0;
  TSR_CUDA_CHECK(cudaMemcpyAsync(&found, longest, sizeof found, cudaMemcpyDeviceToHost, stream));
  TSR_CUDA_CHECK(cudaStreamSynchronize(stream));
  return int64_t(found);
}

template <class V, class I>
int64_t max_row_length_hinted(Context& ctx, const CsrView<V, I>& a) {
  int64_t longest = ctx.row_length_hint(a.indptr, a.rows, a.nnz);
  if (longest < 0) {
    longest = max_row_length(ctx, a);
    ctx.set_row_length_hint(a.indptr, a.rows, a.nnz, longest);
  }
  return longest;
}

bool device_memory_of(const void* p, int device) {
  cudaPointerAttributes attributes{};
  TSR_CUDA_CHECK(cudaPointerGetAttributes(&attributes, p));
  return attributes.type == cudaMemoryTypeManaged ||
         (attributes.type == cudaMemoryTypeDevice && attributes.device == device);
}

bool device_only_memory(const void* p) {
  cudaPointerAttributes attributes{};
  TSR_CUDA_CHECK(cudaPointerGetAttributes(&attributes, p));
  return attributes.type == cudaMemoryTypeDevice;
}

#define TSR_INSTANTIATE_VALIDATE_CUDA(V, I)                                  \
  template void validate_csr(Context&, const CsrView<V, I>&, const char*); \
  template void validate_bsr(Context&, const BsrView<V, I>&);               \
  template void validate_coo(Context&, const CooView<V, I>&);               \
  template void validate_ell(Context&, const EllView<V, I>&, const std::string&); \
  template void validate_hybrid(Context&, const Hybrid<V, I>&);             \
  template int64_t max_row_length(Context&, const CsrView<V, I>&);           \
  template int64_t max_row_length_hinted(Context&, const CsrView<V, I>&);
TSR_FOR_EACH_COMPUTE_TYPE(TSR_INSTANTIATE_VALIDATE_CUDA)

}  // namespace tessera::ops::cuda
