// CPU kernels for baseline x86-64 (or whatever the compiler targets by default).
#define TSR_CPU_ISA baseline
#include "ops/cpu/kernels.inc"

namespace tessera::ops::cpu {
bool cpu_has_x86_64_v3() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}
}  // namespace tessera::ops::cpu
