// Structural validation of a device CSR without copying it to the host: one pass over indptr and
// indices records the first offending position of each kind; the host reads back a few words and
// reports the first problem the way formats/validate.cpp does for host arrays.
#include <cstdint>

#include "core/cuda_check.h"
#include "core/error.h"
#include "formats/sparse.h"
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
void validate_csr(Context& ctx, const CsrView<V, I>& a) {
  TSR_CHECK(a.indptr != nullptr, "Csr: indptr is null");
  TSR_CHECK(a.nnz == 0 || a.indices != nullptr, "Csr: null indices with nnz = ", a.nnz);
  ctx.synchronize();  // work queued earlier on ctx's stream may still be writing a
  const I first_offset = read_one(a.indptr);
  const I last_offset = read_one(a.indptr + a.rows);
  TSR_CHECK(first_offset == 0, "Csr.indptr[0] = ", int64_t(first_offset), ", expected 0");
  TSR_CHECK(int64_t(last_offset) == a.nnz, "Csr.indptr[", a.rows, "] = ", int64_t(last_offset),
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
    TSR_FAIL("Csr.indptr is not monotone: [", r, "] = ", int64_t(read_one(a.indptr + r)), " > [",
             r + 1, "] = ", int64_t(read_one(a.indptr + r + 1)), " (device array)");
  }
  if (found[1] != ~0ull) {
    const int64_t e = int64_t(found[1]);
    TSR_FAIL("Csr.indices[", e, "] = ", int64_t(read_one(a.indices + e)), " is outside [0, ",
             a.cols, ") (device array)");
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

#define TSR_INSTANTIATE_VALIDATE_CUDA(V, I)                    \
  template void validate_csr(Context&, const CsrView<V, I>&); \
  template int64_t max_row_length(Context&, const CsrView<V, I>&);
TSR_FOR_EACH_COMPUTE_TYPE(TSR_INSTANTIATE_VALIDATE_CUDA)

}  // namespace tessera::ops::cuda
