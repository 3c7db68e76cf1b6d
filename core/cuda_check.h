// Checks for CUDA runtime and cuSPARSE calls. Include only from CUDA-enabled translation units.
#pragma once

#include <cuda_runtime_api.h>

#include "core/error.h"

#define TSR_CUDA_CHECK(expr)                                                            \
  do {                                                                                  \
    const cudaError_t tsr_err_ = (expr);                                                \
    TSR_CHECK(tsr_err_ == cudaSuccess, "CUDA error ", cudaGetErrorName(tsr_err_), " (", \
              cudaGetErrorString(tsr_err_), ") in ", #expr);                            \
  } while (0)

/// Checks the last kernel launch (configuration errors surface here; faults at the next sync).
#define TSR_CUDA_CHECK_LAUNCH(kernel_name)                                              \
  do {                                                                                  \
    const cudaError_t tsr_err_ = cudaGetLastError();                                    \
    TSR_CHECK(tsr_err_ == cudaSuccess, "CUDA error ", cudaGetErrorName(tsr_err_), " (", \
              cudaGetErrorString(tsr_err_), ") launching ", kernel_name);               \
  } while (0)

#define TSR_CUSPARSE_CHECK(expr)                                                        \
  do {                                                                                  \
    const cusparseStatus_t tsr_st_ = (expr);                                            \
    TSR_CHECK(tsr_st_ == CUSPARSE_STATUS_SUCCESS, "cuSPARSE error ",                    \
              cusparseGetErrorString(tsr_st_), " in ", #expr);                          \
  } while (0)
