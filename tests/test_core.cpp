#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/buffer.h"
#include "core/config.h"
#include "core/context.h"
#include "core/dense.h"
#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/random.h"

using namespace tessera;
using ::testing::HasSubstr;

TEST(Error, MessageNamesReasonAndLocation) {
  try {
    const int rows = -3;
    TSR_CHECK(rows >= 0, "rows = ", rows, " is negative");
    FAIL() << "TSR_CHECK did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.reason(), "rows = -3 is negative");
    EXPECT_THAT(e.what(), HasSubstr("tests/test_core.cpp:"));
  }
}

TEST(DType, Bf16RoundsToNearestEven) {
  EXPECT_EQ(bf16(1.0f).bits, 0x3f80);
  EXPECT_EQ(float(bf16(1.0f)), 1.0f);
  // 1 + 2^-8 is halfway between bf16 1.0 and 1 + 2^-7: ties go to the even mantissa (1.0).
  EXPECT_EQ(float(bf16(1.0f + std::ldexp(1.0f, -8))), 1.0f);
  EXPECT_EQ(float(bf16(1.0f + 3 * std::ldexp(1.0f, -8))), 1.0f + std::ldexp(1.0f, -6));
  EXPECT_TRUE(std::isnan(float(bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isinf(float(bf16(std::numeric_limits<float>::infinity()))));
}

TEST(DType, F16ConversionsMatchIeee) {
  EXPECT_EQ(f16(1.0f).bits, 0x3c00);
  EXPECT_EQ(f16(-2.0f).bits, 0xc000);
  EXPECT_EQ(f16(65504.0f).bits, 0x7bff);               // largest finite
  EXPECT_EQ(f16(65520.0f).bits, 0x7c00);               // rounds up to infinity
  EXPECT_EQ(f16(std::ldexp(1.0f, -24)).bits, 0x0001);  // smallest subnormal
  EXPECT_EQ(f16(std::ldexp(1.0f, -26)).bits, 0x0000);  // underflows to zero
  EXPECT_EQ(float(f16()), 0.0f);
  EXPECT_TRUE(std::isnan(float(f16(std::nanf("")))));
  // Every finite f16 survives f16 -> float -> f16.
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    f16 h;
    h.bits = uint16_t(bits);
    const float f = float(h);
    if (std::isnan(f)) continue;
    ASSERT_EQ(f16(f).bits, h.bits) << "bits " << bits;
  }
}

TEST(DType, NamesParseBack) {
  for (DType t : {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64}) {
    EXPECT_EQ(parse_dtype(dtype_name(t)), t);
  }
  EXPECT_THROW(parse_dtype("f8"), Error);
}

TEST(Buffer, HostCopyMoveAndVector) {
  Buffer<int> a{1, 2, 3};
  Buffer<int> b = a;
  b[0] = 9;
  EXPECT_EQ(a[0], 1);
  Buffer<int> c = std::move(b);
  EXPECT_EQ(c.size(), 3u);
  EXPECT_EQ(c.to_vector(), (std::vector<int>{9, 2, 3}));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(c.data()) % Buffer<int>::kHostAlignment, 0u);
  Buffer<float> empty;
  EXPECT_TRUE(empty.empty());
  EXPECT_EQ(empty.to(MemorySpace::host).size(), 0u);
}

TEST(Buffer, DeviceWithoutCudaThrowsClearly) {
  if (device::available()) GTEST_SKIP() << "a CUDA device is present";
  try {
    Buffer<float> d(16, MemorySpace::device);
    FAIL() << "device allocation should throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::AnyOf(HasSubstr("no CUDA support"), HasSubstr("no CUDA device")));
  }
}

TEST(Context, AlwaysExistsAndGpuResourcesAreLazy) {
  Context& ctx = Context::default_context();
  EXPECT_EQ(ctx.device(), 0);
  ctx.synchronize();  // no GPU state yet: a no-op
  if (!device::available()) {
    EXPECT_THROW(ctx.stream(), Error);
  }
  EXPECT_THROW(Context(-1), Error);
}

TEST(Dense, ViewsAndValidation) {
  DenseMatrix<float> m(3, 4, 0.5f);
  m(2, 3) = 7.0f;
  DenseView<const float> v = m.view();
  EXPECT_EQ(v(2, 3), 7.0f);
  EXPECT_EQ(v.ld, 4);
  DenseView<float> bad{2, 5, 4, m.data(), MemorySpace::host};
  EXPECT_THROW(validate_dense(bad, "bad"), Error);
  EXPECT_THROW(DenseMatrix<float>(-1, 2), Error);
}

TEST(Rng, DeterministicAndInRange) {
  Rng a(42), b(42), c(43);
  bool differs = false;
  for (int i = 0; i < 1000; ++i) {
    const uint64_t x = a.next();
    EXPECT_EQ(x, b.next());
    differs |= x != c.next();
    const double u = a.uniform();
    b.uniform();
    EXPECT_GE(u, 0.0);
    EXPECT_LT(u, 1.0);
    EXPECT_LT(a.below(7), 7u);
    b.below(7);
  }
  EXPECT_TRUE(differs);
}

TEST(Config, ReportsBuildMode) {
  EXPECT_EQ(kCudaEnabled, TESSERA_WITH_CUDA != 0);
  if (!kCudaEnabled) {
    EXPECT_EQ(device::count(), 0);
  }
}
