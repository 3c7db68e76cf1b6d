// Operand checks shared by the op dispatchers: shapes, memory spaces, and the build's abilities.
#pragma once

#include "core/config.h"
#include "core/dense.h"
#include "core/error.h"

namespace tessera::ops::detail {

/// Throws unless every operand lives in space `s`, and a device space is usable in this build.
inline void check_space(MemorySpace expected, MemorySpace got, const char* op, const char* what) {
  TSR_CHECK(got == expected, op, ": ", what, " is in ", memory_space_name(got),
            " memory but the sparse matrix is in ", memory_space_name(expected), " memory");
}

inline void check_device_build(MemorySpace s, const char* op) {
  TSR_CHECK(s == MemorySpace::host || kCudaEnabled, op,
            ": device operands given, but this build of Tessera has no CUDA support");
}

}  // namespace tessera::ops::detail
