// The device runtime as host code sees it: memory spaces, allocation and copies. Implemented on
// the CUDA runtime in a CUDA build; in a CPU-only build every device request throws tessera::Error.
#pragma once

#include <cstddef>
#include <string>

namespace tessera {

enum class MemorySpace { host, device };

const char* memory_space_name(MemorySpace s);

namespace device {
/// True when this build has CUDA and at least one device is visible.
bool available();
/// Number of visible devices (0 in a CPU-only build or without a driver).
int count();
/// Device name, e.g. "NVIDIA H100 80GB HBM3"; throws if no device is available.
std::string name(int device = 0);
/// Short "H100"-style tag used in result paths; "cpu" when no device is available.
std::string tag(int device = 0);
void* allocate(size_t bytes);
void release(void* ptr) noexcept;
/// Copies bytes between any two spaces; returns once the copy is complete.
void copy(void* dst, MemorySpace dst_space, const void* src, MemorySpace src_space, size_t bytes);
void synchronize();
}  // namespace device

}  // namespace tessera
