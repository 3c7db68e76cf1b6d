#include "core/device.h"

#include <cctype>
#include <cstring>

#include "core/config.h"
#include "core/error.h"

#if TESSERA_WITH_CUDA
#include "core/cuda_check.h"
#endif

namespace tessera {

const char* memory_space_name(MemorySpace s) { return s == MemorySpace::host ? "host" : "device"; }

namespace device {

#if TESSERA_WITH_CUDA

int count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

bool available() { return count() > 0; }

std::string name(int dev) {
  TSR_CHECK(dev >= 0 && dev < count(), "no CUDA device ", dev, " (", count(), " visible)");
  cudaDeviceProp prop{};
  TSR_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  return prop.name;
}

void* allocate(size_t bytes) {
  TSR_CHECK(available(), "device memory requested but no CUDA device is available");
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  TSR_CUDA_CHECK(cudaMalloc(&p, bytes));
  return p;
}

void release(void* ptr) noexcept {
  if (ptr) cudaFree(ptr);
}

void copy(void* dst, MemorySpace dst_space, const void* src, MemorySpace src_space, size_t bytes) {
  if (bytes == 0) return;
  if (dst_space == MemorySpace::host && src_space == MemorySpace::host) {
    std::memcpy(dst, src, bytes);
    return;
  }
  TSR_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
  // A pageable host->device cudaMemcpy may return before its DMA lands; wait, so that work queued
  // next on a non-blocking stream never sees stale memory.
  TSR_CUDA_CHECK(cudaStreamSynchronize(cudaStreamLegacy));
}

void synchronize() { TSR_CUDA_CHECK(cudaDeviceSynchronize()); }

#else  // CPU-only build

int count() { return 0; }
bool available() { return false; }
std::string name(int) { TSR_FAIL("this build of Tessera has no CUDA support (TESSERA_CUDA=OFF)"); }
void* allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  TSR_FAIL("device memory requested, but this build of Tessera has no CUDA support");
}
void release(void*) noexcept {}
void copy(void* dst, MemorySpace dst_space, const void* src, MemorySpace src_space, size_t bytes) {
  if (bytes == 0) return;
  TSR_CHECK(dst_space == MemorySpace::host && src_space == MemorySpace::host,
            "device copy requested, but this build of Tessera has no CUDA support");
  std::memcpy(dst, src, bytes);
}
void synchronize() {}

#endif

std::string tag(int dev) {
  if (!available()) return "cpu";
  const std::string n = name(dev);
  for (const char* known : {"H100", "H200", "H800", "A100", "L40S", "L4", "B200", "GH200"}) {
    if (n.find(known) != std::string::npos) return known;
  }
  std::string t;
  for (char c : n) t += (std::isalnum(static_cast<unsigned char>(c)) ? c : '_');
  return t;
}

}  // namespace device
}  // namespace tessera
