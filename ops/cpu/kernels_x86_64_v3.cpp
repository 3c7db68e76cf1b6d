// CPU kernels for x86-64-v3 (AVX2 + FMA); this file is compiled with -march=x86-64-v3 and only
// called when cpu_has_x86_64_v3() (kernels_baseline.cpp) says the CPU supports it.
#define TSR_CPU_ISA x86_64_v3
#include "ops/cpu/kernels.inc"
