// Build configuration visible to code. TESSERA_WITH_CUDA is set by CMake (TESSERA_CUDA option).
#pragma once

#ifndef TESSERA_WITH_CUDA
#define TESSERA_WITH_CUDA 0
#endif

namespace tessera {
/// True when this build compiled the CUDA kernels. A GPU path called otherwise throws tessera::Error.
inline constexpr bool kCudaEnabled = TESSERA_WITH_CUDA != 0;
inline constexpr const char* kVersion = "0.1.0";
}  // namespace tessera
