// Quick start: read (or generate) a sparse matrix, convert it, multiply it by a dense matrix on the
// CPU (and on the GPU when there is one), and check the two agree.
//   spmm_quickstart [file.mtx]
#include <cmath>
#include <cstdio>

#include "core/device.h"
#include "formats/convert.h"
#include "formats/generators.h"
#include "formats/io.h"
#include "formats/stats.h"
#include "ops/spmm/spmm.h"

using namespace tessera;

int main(int argc, char** argv) try {
  // 1. A matrix: from a Matrix Market file, or a generated power-law graph.
  const Csr<float, int32_t> a =
      argc > 1 ? coo_to_csr(read_matrix_market<float, int32_t>(argv[1]))
               : generate_power_law<float, int32_t>(20000, 12, 2.2, 0.6, 32, GenValues{7, false});
  // 2. Another format, with its statistics.
  const AnySparse<float, int32_t> hyb = from_csr(a, Format::hybrid, ConvertParams{4, 4, -1, {2, 4}});
  std::printf("%s", format_stats(hyb).to_string().c_str());
  // 3. C = A * B on the CPU, through the Hybrid format.
  const int64_t F = 48;
  DenseMatrix<float> b(a.cols, F, 0.25f), c(a.rows, F);
  for (int64_t i = 0; i < a.cols * F; ++i) b.data()[i] = float(i % 17) * 0.125f - 1.0f;
  Context ctx;
  ops::spmm(ctx, hyb, b.view(), c.view());
  // 4. The same product on the GPU (CSR), when one is present.
  if (device::available()) {
    const Csr<float, int32_t> da = a.to(MemorySpace::device);
    const DenseMatrix<float> db = b.to(MemorySpace::device);
    DenseMatrix<float> dc(a.rows, F, MemorySpace::device);
    ops::spmm(ctx, da.view(), db.view(), dc.view());
    ctx.synchronize();
    const DenseMatrix<float> back = dc.to(MemorySpace::host);
    double max_diff = 0;
    for (int64_t i = 0; i < a.rows * F; ++i) max_diff = std::fmax(max_diff, std::fabs(back.data()[i] - c.data()[i]));
    std::printf("GPU vs CPU max difference: %.3g\n", max_diff);
  }
  std::printf("C[0][0..3] = %g %g %g %g\n", c(0, 0), c(0, 1), c(0, 2), c(0, 3));
  return 0;
} catch (const Error& e) {
  std::fprintf(stderr, "spmm_quickstart: %s\n", e.what());
  return 1;
}
