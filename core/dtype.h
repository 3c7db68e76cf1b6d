// Value types. bf16 and f16 are 16-bit storage types usable on the host (and bit-compatible with
// CUDA's __nv_bfloat16 / __half, so device code reinterprets the same buffers). Arithmetic happens
// in float: every kernel accumulates in f32 whatever its input type.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#if defined(__CUDACC__)
#define TSR_HD __host__ __device__
#else
#define TSR_HD
#endif

namespace tessera {

namespace detail {
TSR_HD inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
TSR_HD inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
}  // namespace detail

/// @brief bfloat16: 1 sign, 8 exponent, 7 mantissa bits. Conversion from float rounds to nearest even.
struct bf16 {
  uint16_t bits = 0;
  bf16() = default;
  TSR_HD explicit bf16(float f) : bits(from_float(f)) {}
  TSR_HD explicit operator float() const { return detail::bits_float(uint32_t(bits) << 16); }
  TSR_HD static uint16_t from_float(float f) {
    uint32_t u = detail::float_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return uint16_t(u >> 16);
  }
};

/// @brief IEEE binary16: 1 sign, 5 exponent, 10 mantissa bits. Conversion rounds to nearest even,
/// handles subnormals, overflows to infinity and keeps NaN a NaN.
struct f16 {
  uint16_t bits = 0;
  f16() = default;
  TSR_HD explicit f16(float f) : bits(from_float(f)) {}
  TSR_HD explicit operator float() const {
    const uint32_t sign = uint32_t(bits & 0x8000u) << 16;
    const uint32_t exp = (bits >> 10) & 0x1fu;
    const uint32_t mant = bits & 0x3ffu;
    if (exp == 0) {
      const float mag = float(mant) * 5.9604644775390625e-8f;  // mant * 2^-24
      return sign ? -mag : mag;
    }
    if (exp == 31) return detail::bits_float(sign | 0x7f800000u | (mant << 13));
    return detail::bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
  }
  TSR_HD static uint16_t from_float(float f) {
    const uint32_t x = detail::float_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t exp = (x >> 23) & 0xffu;
    uint32_t mant = x & 0x7fffffu;
    if (exp == 0xff) return uint16_t(sign | 0x7c00u | (mant ? 0x200u : 0u));
    const int e = int(exp) - 127 + 15;
    if (e >= 0x1f) return uint16_t(sign | 0x7c00u);
    if (e <= 0) {  // half subnormal (or zero): value = m * 2^-24
      if (e < -10) return uint16_t(sign);
      mant |= 0x800000u;
      const int shift = 14 - e;
      uint32_t m = mant >> shift;
      const uint32_t rem = mant & ((1u << shift) - 1u);
      const uint32_t half = 1u << (shift - 1);
      if (rem > half || (rem == half && (m & 1u))) ++m;
      return uint16_t(sign | m);
    }
    uint32_t h = sign | (uint32_t(e) << 10) | (mant >> 13);
    const uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry may round up to infinity
    return uint16_t(h);
  }
};

/// Converts any supported value type to float (or double for double).
TSR_HD inline float to_float(float v) { return v; }
TSR_HD inline double to_float(double v) { return v; }
TSR_HD inline float to_float(bf16 v) { return float(v); }
TSR_HD inline float to_float(f16 v) { return float(v); }

/// Converts a float (or double) to value type T.
template <class T>
TSR_HD inline T from_float(double v) {
  if constexpr (std::is_same_v<T, double>) {
    return v;
  } else if constexpr (std::is_same_v<T, float>) {
    return float(v);
  } else {
    return T(float(v));
  }
}

enum class DType { f32, f64, bf16, f16, i32, i64 };

template <class T>
constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<bf16>() { return DType::bf16; }
template <> constexpr DType dtype_of<f16>() { return DType::f16; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::i64; }

/// Short name ("f32", "bf16", ...), as used on the command line and in schedules.
const char* dtype_name(DType t);
/// Bytes per element.
size_t dtype_size(DType t);
/// Parses "f32|f64|bf16|f16|i32|i64"; throws tessera::Error naming the bad string.
DType parse_dtype(const std::string& name);

}  // namespace tessera
