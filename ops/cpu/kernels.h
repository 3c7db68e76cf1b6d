// CPU kernels for SpMM and SDDMM, one per format. They assume validated inputs (the dispatch in
// ops/spmm/spmm.cpp and ops/sddmm/sddmm.cpp checks first) and never throw inside OpenMP regions.
// Each kernel exists twice: built for baseline x86-64 and for x86-64-v3 (AVX2 + FMA);
// kernels_for_this_cpu() picks one at run time.
#pragma once

#include "core/dense.h"
#include "formats/sparse.h"

namespace tessera::ops::cpu {

struct SpmmScalars {
  float alpha = 1.0f;
  float beta = 0.0f;
  int threads = 0;  // 0: OpenMP default
};

// Every kernel below is declared once per instruction-set namespace.
#define TSR_DECLARE_CPU_KERNELS                                                                     \
  template <class V, class I>                                                                     \
  void spmm_csr_row_split(const CsrView<V, I>& a, DenseView<const V> b, DenseView<float> c,       \
                          const SpmmScalars& s);                                                  \
  template <class V, class I>                                                                     \
  void spmm_coo_feature_split(const CooView<V, I>& a, DenseView<const V> b, DenseView<float> c,   \
                              const SpmmScalars& s);                                              \
  template <class V, class I>                                                                     \
  void spmm_csc_feature_split(const CscView<V, I>& a, DenseView<const V> b, DenseView<float> c,   \
                              const SpmmScalars& s);                                              \
  template <class V, class I>                                                                     \
  void spmm_bsr_block_row(const BsrView<V, I>& a, DenseView<const V> b, DenseView<float> c,       \
                          const SpmmScalars& s);                                                  \
  template <class V, class I>                                                                     \
  void spmm_ell_row_split(const EllView<V, I>& a, const I* row_map, DenseView<const V> b,         \
                          DenseView<float> c, const SpmmScalars& s, bool accumulate);             \
  template <class V, class I>                                                                     \
  void spmm_ragged_row_split(const RaggedMatrix<V, I>& a, DenseView<const V> b,                   \
                             DenseView<float> c, const SpmmScalars& s);                           \
  template <class V, class I>                                                                     \
  void spmm_csr_mapped_accumulate(const CsrView<V, I>& a, const I* row_map, DenseView<const V> b, \
                                  DenseView<float> c, const SpmmScalars& s);                      \
  void scale_rows(DenseView<float> c, float beta, int threads);                                   \
  template <class V, class I>                                                                     \
  void sddmm_csr_row_split(const CsrView<V, I>& a, const I* row_map, DenseView<const V> x,        \
                           DenseView<const V> y, bool scale_by_a, float* out, int threads);       \
  template <class V, class I>                                                                     \
  void sddmm_coo_edge_split(const CooView<V, I>& a, DenseView<const V> x, DenseView<const V> y,   \
                            bool scale_by_a, float* out, int threads);                            \
  template <class V, class I>                                                                     \
  void sddmm_csc_col_split(const CscView<V, I>& a, DenseView<const V> x, DenseView<const V> y,    \
                           bool scale_by_a, float* out, int threads);                             \
  template <class V, class I>                                                                     \
  void sddmm_bsr_block(const BsrView<V, I>& a, DenseView<const V> x, DenseView<const V> y,        \
                       bool scale_by_a, float* out, int threads);                                 \
  template <class V, class I>                                                                     \
  void sddmm_ell_row_split(const EllView<V, I>& a, const I* row_map, DenseView<const V> x,        \
                           DenseView<const V> y, bool scale_by_a, float* out, int threads);       \
  template <class V, class I>                                                                     \
  void sddmm_ragged_row_split(const RaggedMatrix<V, I>& a, DenseView<const V> x,                  \
                              DenseView<const V> y, bool scale_by_a, float* out, int threads);

namespace baseline {
TSR_DECLARE_CPU_KERNELS
}
namespace x86_64_v3 {
TSR_DECLARE_CPU_KERNELS
}

/// True when the x86-64-v3 kernels can run here (AVX2 and FMA).
bool cpu_has_x86_64_v3();

}  // namespace tessera::ops::cpu

/// Calls cpu::<isa>::NAME(args...) for the best instruction set this CPU supports.
#define TSR_CPU_DISPATCH(NAME, ...)                           \
  (::tessera::ops::cpu::cpu_has_x86_64_v3()                   \
       ? ::tessera::ops::cpu::x86_64_v3::NAME(__VA_ARGS__)    \
       : ::tessera::ops::cpu::baseline::NAME(__VA_ARGS__))
