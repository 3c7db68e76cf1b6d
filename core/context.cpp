#include "core/context.h"

#include "core/config.h"
#include "core/device.h"
#include "core/error.h"

#if TESSERA_WITH_CUDA
#include <cusparse.h>

#include "core/cuda_check.h"
#endif

namespace tessera {

#if TESSERA_WITH_CUDA
struct Context::GpuState {
  int device = 0;
  cudaStream_t stream = nullptr;
  cusparseHandle_t cusparse = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;

  explicit GpuState(int dev) : device(dev) {
    TSR_CHECK(device::available(), "a GPU resource was requested but no CUDA device is available");
    TSR_CUDA_CHECK(cudaSetDevice(dev));
    TSR_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  }
  ~GpuState() {
    if (cusparse) cusparseDestroy(cusparse);
    if (workspace) cudaFree(workspace);
    if (stream) cudaStreamDestroy(stream);
  }
};
#else
struct Context::GpuState {
  explicit GpuState(int) {}
};
#endif

Context::Context(int device) : device_(device) {
  TSR_CHECK(device >= 0, "device index ", device, " is negative");
}
Context::~Context() = default;

Context::GpuState& Context::gpu() {
  if constexpr (!kCudaEnabled) {
    TSR_FAIL("a GPU resource was requested, but this build of Tessera has no CUDA support");
  }
  if (!gpu_) gpu_ = std::make_unique<GpuState>(device_);
  return *gpu_;
}

void* Context::stream() {
#if TESSERA_WITH_CUDA
  return gpu().stream;
#else
  gpu();
  return nullptr;
#endif
}

void* Context::cusparse_handle() {
#if TESSERA_WITH_CUDA
  GpuState& g = gpu();
  if (!g.cusparse) {
    TSR_CUSPARSE_CHECK(cusparseCreate(&g.cusparse));
    TSR_CUSPARSE_CHECK(cusparseSetStream(g.cusparse, g.stream));
  }
  return g.cusparse;
#else
  gpu();
  return nullptr;
#endif
}

void* Context::workspace(size_t bytes) {
#if TESSERA_WITH_CUDA
  GpuState& g = gpu();
  if (bytes > g.workspace_bytes) {
    void* grown = nullptr;
    TSR_CUDA_CHECK(cudaMalloc(&grown, bytes));
    if (g.workspace) {  // keep the contents: an op may grow its scratch between two stages
      try {
        TSR_CUDA_CHECK(cudaMemcpyAsync(grown, g.workspace, g.workspace_bytes,
                                       cudaMemcpyDeviceToDevice, g.stream));
        TSR_CUDA_CHECK(cudaStreamSynchronize(g.stream));  // the old workspace may still be in use
      } catch (...) {
        cudaFree(grown);
        throw;
      }
      TSR_CUDA_CHECK(cudaFree(g.workspace));
    }
    g.workspace = grown;
    g.workspace_bytes = bytes;
  }
  return g.workspace;
#else
  (void)bytes;
  gpu();
  return nullptr;
#endif
}

void Context::synchronize() {
#if TESSERA_WITH_CUDA
  if (gpu_) TSR_CUDA_CHECK(cudaStreamSynchronize(gpu_->stream));
#endif
}

int64_t Context::row_length_hint(const void* indptr, int64_t rows, int64_t nnz) const {
  const auto it = row_length_hints_.find({indptr, rows, nnz});
  return it == row_length_hints_.end() ? -1 : it->second;
}

void Context::set_row_length_hint(const void* indptr, int64_t rows, int64_t nnz, int64_t max_row_length) {
  if (row_length_hints_.size() >= 4096) row_length_hints_.clear();  // hints only: bounded, not LRU
  row_length_hints_[{indptr, rows, nnz}] = max_row_length;
}

Context& Context::default_context() {
  static Context ctx(0);
  return ctx;
}

}  // namespace tessera
