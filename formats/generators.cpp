// Matrix generators. Determinism rules, so that the same parameters give bit-identical CSR on every
// machine and for every thread count:
//   - randomness comes only from tessera::Rng; each family of decisions (R-MAT draws, permutation,
//     row structure, degrees, values) has its own stream, derived from (seed, stream, block index);
//   - work is split into fixed-size blocks (kRowBlock rows, kDrawBlock R-MAT draws), one Rng per
//     block, so the thread count only changes who computes a block, never what it computes;
//   - an entry's value depends only on (seed, row, col), never on the order entries were made;
//   - decisions that need log/exp use portable_log/portable_exp below (+, -, *, / only), so no
//     libm difference can move an entry.
#include "formats/generators.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <limits>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/random.h"

// Fused multiply-add would change rounding; GCC in ISO mode (-std=c++17) does not contract.
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

namespace tessera {

namespace {

// Independent random streams (mixed into each block's seed).
enum Stream : uint64_t {
  kValueStream = 1,
  kRmatStream = 2,
  kPermStream = 3,
  kErdosRenyiStream = 4,
  kClusteredStream = 5,
  kDegreeStream = 6,
  kTargetStream = 7,
  kBandedStream = 8,  // banded rows are fixed; the stream goes unused
};

constexpr int64_t kRowBlock = 1024;      // rows per Rng block
constexpr int64_t kDrawBlock = 1 << 16;  // R-MAT edge draws per Rng block

// ---------------------------------------------------------------------------------------------
// Seeds and portable math.

uint64_t mix64(uint64_t z) {  // splitmix64 finalizer: a bijection on 64-bit words
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t derive_seed(uint64_t seed, uint64_t a, uint64_t b) {
  return mix64(mix64(mix64(seed) ^ a) ^ b);
}

constexpr double kLn2 = 0.6931471805599453094;
constexpr double kLn2Hi = 6.93147180369123816490e-01;  // high bits of ln 2 (exact times k)
constexpr double kLn2Lo = 1.90821492927058770002e-10;  // ln 2 - kLn2Hi
constexpr double kSqrtHalf = 0.70710678118654752440;

// 2 atanh(s) = ln((1 + s) / (1 - s)) for |s| <= 0.1716 (error below 1 ulp-ish; s^24 < 1e-18).
double atanh_series(double s) {
  const double s2 = s * s;
  double sum = 0;
  for (int k = 11; k >= 0; --k) {
    const double t = sum * s2;
    sum = t + 1.0 / double(2 * k + 1);
  }
  const double twice = 2.0 * s;
  return twice * sum;
}

/// ln(x) for finite x > 0 from +, -, *, / only: bit-identical on every platform.
double portable_log(double x) {
  int e = 0;
  double m = std::frexp(x, &e);  // exact: x = m 2^e, m in [0.5, 1)
  if (m < kSqrtHalf) {
    m *= 2;
    --e;
  }  // m in [sqrt(1/2), sqrt(2)): s below is in [-0.1716, 0.1716]
  const double s = (m - 1) / (m + 1);
  const double ek = double(e) * kLn2;
  return ek + atanh_series(s);
}

/// ln(1 + x) for x > -1, accurate for small |x|.
double portable_log1p(double x) {
  if (x > -0.29 && x < 0.41) return atanh_series(x / (2 + x));  // (1+s)/(1-s) = 1 + x
  return portable_log(1 + x);
}

/// e^x for x in [-700, 700] from +, -, *, / only.
double portable_exp(double x) {
  const double k = std::floor(x * (1 / kLn2) + 0.5);
  const double hi = x - k * kLn2Hi;
  const double r = hi - k * kLn2Lo;  // |r| <= 0.35
  double sum = 1;
  for (int i = 20; i >= 1; --i) {  // Horner on sum_i r^i / i!
    const double t = sum * r;
    sum = 1 + t / double(i);
  }
  return std::ldexp(sum, int(k));
}

// ---------------------------------------------------------------------------------------------
// Parallel loop and shared pieces.

/// Calls body(block, begin, end) for each fixed-size block of [0, count); no exception escapes the
/// OpenMP region (the first one is rethrown after it).
template <class Body>
void parallel_blocks(int64_t count, int64_t block, const Body& body) {
  const int64_t blocks = (count + block - 1) / block;
  std::exception_ptr error = nullptr;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t b = 0; b < blocks; ++b) {
    try {
      body(b, b * block, std::min(count, (b + 1) * block));
    } catch (...) {
#pragma omp critical(tessera_generators_error)
      {
        if (!error) error = std::current_exception();
      }
    }
  }
  if (error) std::rethrow_exception(error);
}

template <class I>
const char* index_name() {
  return sizeof(I) == 4 ? "int32" : "int64";
}

template <class I>
void check_size(const char* fn, const char* what, int64_t value) {
  TSR_CHECK(value >= 0, fn, ": ", what, " = ", value, " must be >= 0");
  TSR_CHECK(fits_index<I>(value), fn, ": ", what, " = ", value, " does not fit the ",
            index_name<I>(), " index type; use int64 indices");
}

template <class I>
void check_nnz(const char* fn, int64_t nnz) {
  TSR_CHECK(fits_index<I>(nnz), fn, ": nnz = ", nnz, " does not fit the ", index_name<I>(),
            " index type; use int64 indices");
}

/// Fails early when an expected nnz is far beyond I (before memory is spent generating it).
template <class I>
void check_expected_nnz(const char* fn, double expected) {
  const double limit = double(std::numeric_limits<I>::max());
  TSR_CHECK(!(expected > 1.05 * limit + 1e4), fn, ": expected nnz ~ ", expected,
            " does not fit the ", index_name<I>(), " index type; use int64 indices");
}

void check_probability(const char* fn, const char* what, double p) {
  TSR_CHECK(p >= 0 && p <= 1, fn, ": ", what, " = ", p, " must be in [0, 1]");
}

/// Value of entry (r, c), from entry_seed = derive_seed(value_seed, r, c): uniform in [-1, 1)
/// after rounding to V, never zero.
template <class V>
V entry_value(uint64_t entry_seed) {
  Rng rng(entry_seed);
  for (;;) {
    const V v = from_float<V>(rng.uniform(-1.0, 1.0));
    const double f = double(to_float(v));
    if (f != 0.0 && f < 1.0) return v;  // rounding to V can reach 0 (f16) or 1
  }
}

/// Values for a finished structure. symmetric: (r, c) and (c, r) get the same value.
template <class V, class I>
Buffer<V> make_values(int64_t rows, const Buffer<I>& indptr, const Buffer<I>& indices,
                      const GenValues& g, bool symmetric) {
  Buffer<V> values(indices.size());
  if (g.unit_values) {
    std::fill(values.begin(), values.end(), from_float<V>(1.0));
    return values;
  }
  // derive_seed(value_seed, r, c) = mix64(mix64(base ^ r) ^ c): the row part is hoisted.
  const uint64_t base = mix64(derive_seed(g.seed, kValueStream, 0));
  parallel_blocks(rows, kRowBlock, [&](int64_t, int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const uint64_t row_key = mix64(base ^ uint64_t(r));
      for (int64_t k = int64_t(indptr[r]); k < int64_t(indptr[r + 1]); ++k) {
        const int64_t c = int64_t(indices[k]);
        if (symmetric && c < r) {  // keyed by (min, max)
          values[k] = entry_value<V>(mix64(mix64(base ^ uint64_t(c)) ^ uint64_t(r)));
        } else {
          values[k] = entry_value<V>(mix64(row_key ^ uint64_t(c)));
        }
      }
    }
  });
  return values;
}

template <class I>
struct Structure {
  Buffer<I> indptr;   // [rows + 1]
  Buffer<I> indices;  // [nnz], strictly increasing within each row
};

/// Builds rows block by block; row_fn(row, rng, cols) appends the row's columns, strictly
/// increasing. Rows of a block share one Rng seeded from (seed, stream, block).
template <class I, class RowFn>
Structure<I> build_rows(const char* fn, int64_t rows, uint64_t seed, Stream stream,
                        const RowFn& row_fn) {
  const int64_t blocks = (rows + kRowBlock - 1) / kRowBlock;
  std::vector<std::vector<I>> block_cols(static_cast<size_t>(blocks));
  std::vector<int64_t> row_len(static_cast<size_t>(rows));
  parallel_blocks(rows, kRowBlock, [&](int64_t b, int64_t begin, int64_t end) {
    Rng rng(derive_seed(seed, stream, uint64_t(b)));
    std::vector<int64_t> cols;
    std::vector<I>& out = block_cols[size_t(b)];
    for (int64_t r = begin; r < end; ++r) {
      cols.clear();
      row_fn(r, rng, cols);
      row_len[size_t(r)] = int64_t(cols.size());
      out.insert(out.end(), cols.begin(), cols.end());
    }
  });
  int64_t nnz = 0;
  for (int64_t len : row_len) nnz += len;
  check_nnz<I>(fn, nnz);

  Structure<I> s{Buffer<I>(size_t(rows) + 1), Buffer<I>(size_t(nnz))};
  s.indptr[0] = 0;
  for (int64_t r = 0; r < rows; ++r) s.indptr[r + 1] = I(int64_t(s.indptr[r]) + row_len[size_t(r)]);
  parallel_blocks(rows, kRowBlock, [&](int64_t b, int64_t begin, int64_t) {
    const std::vector<I>& src = block_cols[size_t(b)];
    std::copy(src.begin(), src.end(), s.indices.begin() + int64_t(s.indptr[begin]));
  });
  return s;
}

/// Appends each column of [begin, end) independently with probability p, in increasing order.
/// Gaps are geometric: floor(ln u / ln(1 - p)) absent cells precede each present one.
void sample_bernoulli_run(Rng& rng, int64_t begin, int64_t end, double p, double log_q,
                          std::vector<int64_t>& out) {
  if (begin >= end || p <= 0) return;
  if (p >= 1) {
    for (int64_t c = begin; c < end; ++c) out.push_back(c);
    return;
  }
  int64_t last = begin - 1;  // invariant: every column <= last has been decided
  for (;;) {
    const double u = 1.0 - rng.uniform();         // (0, 1]
    const double gap = portable_log(u) / log_q;   // >= 0 (or -0)
    if (!(gap < double(end - last - 1))) return;  // the next present cell is at or past end
    last += 1 + int64_t(gap);
    out.push_back(last);
  }
}

/// Appends k distinct values of [lo, lo + m), uniformly chosen (k <= m), sorted (Floyd's
/// algorithm: k draws, no rejection).
void sample_distinct(Rng& rng, int64_t lo, int64_t m, int64_t k, std::vector<int64_t>& out) {
  const size_t first = out.size();
  if (k == m) {
    for (int64_t c = lo; c < lo + m; ++c) out.push_back(c);
    return;
  }
  std::unordered_set<int64_t> seen;  // membership only: iteration order never matters
  if (k > 64) seen.reserve(size_t(2 * k));
  for (int64_t j = m - k; j < m; ++j) {
    const int64_t t = int64_t(rng.below(uint64_t(j) + 1));
    const bool taken =
        k > 64 ? seen.count(t) > 0
               : std::find(out.begin() + int64_t(first), out.end(), lo + t) != out.end();
    const int64_t pick = taken ? j : t;  // j is new: earlier picks are all < j
    if (k > 64) seen.insert(pick);
    out.push_back(lo + pick);
  }
  std::sort(out.begin() + int64_t(first), out.end());
}

/// Adds draws to out (distinct values on entry) until it holds count distinct values, sorted.
/// Duplicates are redrawn for a few rounds only, so a nearly exhausted range may end short.
template <class Draw>
void draw_distinct(int64_t count, std::vector<int64_t>& out, const Draw& draw) {
  constexpr int kRounds = 4;
  for (int round = 0; round < kRounds && int64_t(out.size()) < count; ++round) {
    for (int64_t k = int64_t(out.size()); k < count; ++k) out.push_back(draw());
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
  }
}

template <class V, class I>
Csr<V, I> assemble(int64_t rows, int64_t cols, Structure<I>&& s, const GenValues& g,
                   bool symmetric) {
  Csr<V, I> out;
  out.rows = rows;
  out.cols = cols;
  out.values = make_values<V, I>(rows, s.indptr, s.indices, g, symmetric);
  out.indptr = std::move(s.indptr);
  out.indices = std::move(s.indices);
  return out;
}

// ---------------------------------------------------------------------------------------------
// R-MAT.

/// Sorts keys by the bits in fields {{lo, width}, ...} (least significant field first), LSD radix
/// with 11-bit digits; keys equal on those bits keep their order. Used where all other bits agree.
void radix_sort_bits(uint64_t* first, uint64_t* last,
                     std::initializer_list<std::pair<int, int>> fields) {
  constexpr int kDigit = 11;
  const size_t size = size_t(last - first);
  if (size < 2) return;
  std::vector<uint64_t> scratch(size);
  uint64_t* from = first;
  uint64_t* to = scratch.data();
  std::vector<size_t> count(size_t(1) << kDigit);
  for (const auto& [lo, width] : fields) {
    for (int bit = lo; bit < lo + width; bit += kDigit) {
      const int digit_bits = std::min(kDigit, lo + width - bit);
      const uint64_t mask = (uint64_t(1) << digit_bits) - 1;
      std::fill(count.begin(), count.begin() + (int64_t(1) << digit_bits), 0);
      for (size_t i = 0; i < size; ++i) ++count[(from[i] >> bit) & mask];
      size_t pos = 0;
      for (uint64_t d = 0; d <= mask; ++d) {
        const size_t c = count[d];
        count[d] = pos;
        pos += c;
      }
      for (size_t i = 0; i < size; ++i) to[count[(from[i] >> bit) & mask]++] = from[i];
      std::swap(from, to);
    }
  }
  if (from != first) std::copy(from, from + size, first);
}

/// R-MAT structure. Node holds a node id (uint32_t when scale <= 32); Key packs an edge as
/// (row << kHalf) | col, so sorting keys sorts edges by row, then column.
template <class Node, class Key, class I>
Structure<I> rmat_structure(const RmatParams& p, uint64_t seed, int64_t n, int64_t draws) {
  constexpr int kHalf = int(sizeof(Key)) * 4;
  constexpr Key kColMask = (Key(1) << kHalf) - 1;
  const int scale = p.scale;

  // Quadrant q of one level from a 32-bit uniform x: q = [x >= t1] + [x >= t2] + [x >= t3];
  // q = 0 (a) top-left, 1 (b) top-right, 2 (c) bottom-left, 3 (d) bottom-right.
  const double sum = p.a + p.b + p.c + p.d;
  auto threshold = [&](double cumulative) {
    return uint64_t(std::llround(std::min(1.0, cumulative / sum) * 4294967296.0));
  };
  const uint64_t t1 = threshold(p.a), t2 = threshold(p.a + p.b), t3 = threshold(p.a + p.b + p.c);

  Buffer<Node> src(static_cast<size_t>(draws)), dst(static_cast<size_t>(draws));
  parallel_blocks(draws, kDrawBlock, [&](int64_t b, int64_t begin, int64_t end) {
    Rng rng(derive_seed(seed, kRmatStream, uint64_t(b)));
    for (int64_t e = begin; e < end; ++e) {
      uint64_t r = 0, c = 0;
      for (int level = 0; level < scale;) {
        const uint64_t bits = rng.next();  // two 32-bit uniforms per call
        for (int half = 0; half < 2 && level < scale; ++half, ++level) {
          const uint64_t x = (bits >> (32 * half)) & 0xffffffffull;
          const unsigned q = unsigned(x >= t1) + unsigned(x >= t2) + unsigned(x >= t3);
          r = (r << 1) | (q >> 1);
          c = (c << 1) | (q & 1u);
        }
      }
      src[e] = Node(r);
      dst[e] = Node(c);
    }
  });
  if (p.permute_vertices) {  // Fisher-Yates on one stream, applied in a pass of its own so that
                             // the independent lookups overlap their cache misses
    Buffer<Node> perm(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) perm[i] = Node(i);
    Rng rng(derive_seed(seed, kPermStream, 0));
    for (int64_t i = n - 1; i > 0; --i) std::swap(perm[i], perm[rng.below(uint64_t(i) + 1)]);
    parallel_blocks(draws, kDrawBlock, [&](int64_t, int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) {
        src[e] = perm[src[e]];
        dst[e] = perm[dst[e]];
      }
    });
  }

  // Partition edges into row buckets (row >> shift). Chunk ch of the draws owns, inside each
  // bucket, a slot range fixed by the counts alone: no atomics, and the layout does not depend
  // on the thread count.
  const bool sym = p.symmetrize;
  const bool drop_loops = p.remove_self_loops;
  const int shift = std::max(0, scale - 10);
  const int64_t buckets = n >> shift;  // <= 1024
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(256, draws / kDrawBlock));
  const int64_t chunk = std::max<int64_t>(1, (draws + chunks - 1) / chunks);
  std::vector<int64_t> slot(static_cast<size_t>(chunks * buckets), 0);  // [chunk][bucket]
  auto for_each_edge = [&](int64_t begin, int64_t end, auto&& emit) {
    for (int64_t e = begin; e < end; ++e) {
      const Node r = src[e], c = dst[e];
      if (drop_loops && r == c) continue;
      emit(r, c);
      if (sym) emit(c, r);
    }
  };
  parallel_blocks(draws, chunk, [&](int64_t ch, int64_t begin, int64_t end) {
    int64_t* count = slot.data() + ch * buckets;
    for_each_edge(begin, end, [&](Node r, Node) { ++count[r >> shift]; });
  });
  std::vector<int64_t> bucket_start(static_cast<size_t>(buckets) + 1);
  int64_t total = 0;
  for (int64_t b = 0; b < buckets; ++b) {  // bucket-major, chunk-minor
    bucket_start[size_t(b)] = total;
    for (int64_t ch = 0; ch < chunks; ++ch) {
      const int64_t count = slot[size_t(ch * buckets + b)];
      slot[size_t(ch * buckets + b)] = total;
      total += count;
    }
  }
  bucket_start[size_t(buckets)] = total;
  Buffer<Key> keys(static_cast<size_t>(total));
  parallel_blocks(draws, chunk, [&](int64_t ch, int64_t begin, int64_t end) {
    int64_t* cursor = slot.data() + ch * buckets;
    for_each_edge(begin, end,
                  [&](Node r, Node c) { keys[cursor[r >> shift]++] = (Key(r) << kHalf) | Key(c); });
  });
  src = Buffer<Node>();
  dst = Buffer<Node>();

  // Sort and deduplicate each bucket; its rows are then contiguous and column-sorted.
  std::vector<int64_t> row_len(static_cast<size_t>(n), 0);
  std::vector<int64_t> bucket_len(static_cast<size_t>(buckets));
  parallel_blocks(buckets, 1, [&](int64_t b, int64_t, int64_t) {
    Key* first = keys.data() + bucket_start[size_t(b)];
    Key* last = keys.data() + bucket_start[size_t(b) + 1];
    if constexpr (sizeof(Key) == 8) {
      // Within a bucket only the row's low `shift` bits and the column's `scale` bits vary.
      radix_sort_bits(first, last, {{0, scale}, {kHalf, shift}});
    } else {
      std::sort(first, last);
    }
    last = std::unique(first, last);
    bucket_len[size_t(b)] = last - first;
    for (const Key* k = first; k < last; ++k) ++row_len[size_t(*k >> kHalf)];
  });
  int64_t nnz = 0;
  for (int64_t len : bucket_len) nnz += len;
  check_nnz<I>("generate_rmat", nnz);

  Structure<I> s{Buffer<I>(static_cast<size_t>(n) + 1), Buffer<I>(static_cast<size_t>(nnz))};
  s.indptr[0] = 0;
  for (int64_t r = 0; r < n; ++r) s.indptr[r + 1] = I(int64_t(s.indptr[r]) + row_len[size_t(r)]);
  parallel_blocks(buckets, 1, [&](int64_t b, int64_t, int64_t) {
    const Key* from = keys.data() + bucket_start[size_t(b)];
    I* to = s.indices.data() + int64_t(s.indptr[b << shift]);
    for (int64_t k = 0; k < bucket_len[size_t(b)]; ++k) to[k] = I(from[k] & kColMask);
  });
  return s;
}

}  // namespace

template <class V, class I>
Csr<V, I> generate_rmat(const RmatParams& p, const GenValues& g) {
  const char* fn = "generate_rmat";
  TSR_CHECK(p.scale >= 0 && p.scale <= 40, fn, ": scale = ", p.scale, " must be in [0, 40]");
  const int64_t n = int64_t(1) << p.scale;
  check_size<I>(fn, "2^scale (node count)", n);
  TSR_CHECK(std::isfinite(p.edge_factor) && p.edge_factor >= 0, fn,
            ": edge_factor = ", p.edge_factor, " must be finite and >= 0");
  const double draws_d = std::round(p.edge_factor * double(n));
  TSR_CHECK(draws_d < 0x1p62, fn, ": edge_factor * 2^scale = ", draws_d, " draws is too many");
  for (double q : {p.a, p.b, p.c, p.d}) {
    TSR_CHECK(std::isfinite(q) && q >= 0, fn, ": quadrant probabilities must be finite and >= 0",
              " (a = ", p.a, ", b = ", p.b, ", c = ", p.c, ", d = ", p.d, ")");
  }
  const double sum = p.a + p.b + p.c + p.d;
  TSR_CHECK(std::fabs(sum - 1) <= 1e-6, fn, ": a + b + c + d = ", sum, " must be 1 (a = ", p.a,
            ", b = ", p.b, ", c = ", p.c, ", d = ", p.d, ")");
  const int64_t draws = int64_t(draws_d);
  Structure<I> s = p.scale <= 32
                       ? rmat_structure<uint32_t, uint64_t, I>(p, g.seed, n, draws)
                       : rmat_structure<uint64_t, unsigned __int128, I>(p, g.seed, n, draws);
  return assemble<V, I>(n, n, std::move(s), g, p.symmetrize);
}

template <class V, class I>
Csr<V, I> generate_erdos_renyi(int64_t rows, int64_t cols, double density, const GenValues& g) {
  const char* fn = "generate_erdos_renyi";
  check_size<I>(fn, "rows", rows);
  check_size<I>(fn, "cols", cols);
  check_probability(fn, "density", density);
  check_expected_nnz<I>(fn, double(rows) * double(cols) * density);
  const double log_q = density < 1 ? portable_log1p(-density) : 0.0;
  Structure<I> s = build_rows<I>(fn, rows, g.seed, kErdosRenyiStream,
                                 [&](int64_t, Rng& rng, std::vector<int64_t>& out) {
                                   sample_bernoulli_run(rng, 0, cols, density, log_q, out);
                                 });
  return assemble<V, I>(rows, cols, std::move(s), g, false);
}

template <class V, class I>
Csr<V, I> generate_banded(int64_t n, int64_t lower, int64_t upper, const GenValues& g) {
  const char* fn = "generate_banded";
  check_size<I>(fn, "n", n);
  TSR_CHECK(lower >= 0, fn, ": lower = ", lower, " must be >= 0");
  TSR_CHECK(upper >= 0, fn, ": upper = ", upper, " must be >= 0");
  // Exact count: full rows of lo + up + 1 minus the two clipped corner triangles.
  const __int128 lo = n > 0 ? std::min(lower, n - 1) : 0;
  const __int128 up = n > 0 ? std::min(upper, n - 1) : 0;
  const __int128 nnz128 = __int128(n) * (lo + up + 1) - lo * (lo + 1) / 2 - up * (up + 1) / 2;
  const bool fits = n == 0 || nnz128 <= __int128(std::numeric_limits<I>::max());
  TSR_CHECK(fits, fn, ": nnz = ", double(nnz128), " (n = ", n, ", lower = ", lower,
            ", upper = ", upper, ") does not fit the ", index_name<I>(),
            " index type; use int64 indices");
  Structure<I> s =
      build_rows<I>(fn, n, g.seed, kBandedStream, [&](int64_t r, Rng&, std::vector<int64_t>& out) {
        const int64_t first = r - std::min(r, lower);
        const int64_t last = r + std::min(n - 1 - r, upper);
        for (int64_t c = first; c <= last; ++c) out.push_back(c);
      });
  return assemble<V, I>(n, n, std::move(s), g, false);
}

template <class V, class I>
Csr<V, I> generate_clustered(int64_t n, int64_t block, double inner_density, double outer_density,
                             const GenValues& g) {
  const char* fn = "generate_clustered";
  check_size<I>(fn, "n", n);
  TSR_CHECK(block >= 1, fn, ": block = ", block, " must be >= 1");
  check_probability(fn, "inner_density", inner_density);
  check_probability(fn, "outer_density", outer_density);
  const int64_t b = std::min(block, std::max<int64_t>(n, 1));
  const int64_t full = n / b, tail = n % b;  // full blocks, then one partial block of tail rows
  const double inside = double(full) * double(b) * double(b) + double(tail) * double(tail);
  const double all = double(n) * double(n);
  check_expected_nnz<I>(fn, inside * inner_density + (all - inside) * outer_density);
  const double log_in = inner_density < 1 ? portable_log1p(-inner_density) : 0.0;
  const double log_out = outer_density < 1 ? portable_log1p(-outer_density) : 0.0;
  Structure<I> s = build_rows<I>(
      fn, n, g.seed, kClusteredStream, [&](int64_t r, Rng& rng, std::vector<int64_t>& out) {
        const int64_t begin = r / b * b;
        const int64_t end = std::min(n, begin + b);
        sample_bernoulli_run(rng, 0, begin, outer_density, log_out, out);
        sample_bernoulli_run(rng, begin, end, inner_density, log_in, out);
        sample_bernoulli_run(rng, end, n, outer_density, log_out, out);
      });
  return assemble<V, I>(n, n, std::move(s), g, false);
}

template <class V, class I>
Csr<V, I> generate_power_law(int64_t n, double avg_degree, double exponent, double locality,
                             int64_t window, const GenValues& g) {
  const char* fn = "generate_power_law";
  check_size<I>(fn, "n", n);
  TSR_CHECK(std::isfinite(exponent) && exponent > 1, fn, ": exponent = ", exponent,
            " must be finite and > 1");
  check_probability(fn, "locality", locality);
  TSR_CHECK(window >= 0, fn, ": window = ", window, " must be >= 0");
  TSR_CHECK(std::isfinite(avg_degree) && avg_degree >= 1, fn, ": avg_degree = ", avg_degree,
            " must be finite and >= 1 (every node has at least one edge)");
  TSR_CHECK(n == 0 || avg_degree <= double(n), fn, ": avg_degree = ", avg_degree,
            " must be <= n = ", n, " (degrees are capped at n)");
  const double target_d = std::round(double(n) * avg_degree);
  check_expected_nnz<I>(fn, target_d);
  TSR_CHECK(target_d < 0x1p62, fn, ": n * avg_degree = ", target_d, " is too many edges");
  const int64_t target = int64_t(target_d);

  // Pareto weights w = u^(-1/(exponent - 1)), u in (0, 1]: density of w ~ w^-exponent, w >= 1.
  std::vector<double> weight(static_cast<size_t>(n));
  parallel_blocks(n, kRowBlock, [&](int64_t b, int64_t begin, int64_t end) {
    Rng rng(derive_seed(g.seed, kDegreeStream, uint64_t(b)));
    for (int64_t i = begin; i < end; ++i) {
      const double log_w = -portable_log(1.0 - rng.uniform()) / (exponent - 1);
      weight[size_t(i)] = portable_exp(std::min(log_w, 700.0));
    }
  });
  // degree_i(s) = clamp(round(s w_i), 1, n); bisection finds s with sum_i degree_i(s) >= target
  // (within 1 ppm, or as close as doubles allow).
  auto degree = [n](double s, double w) -> int64_t {
    const double x = s * w;
    if (!(x < double(n))) return n;
    return std::max<int64_t>(1, std::llround(x));
  };
  const int64_t blocks = (n + kRowBlock - 1) / kRowBlock;
  std::vector<int64_t> partial(static_cast<size_t>(blocks));
  auto degree_sum = [&](double s) {
    parallel_blocks(n, kRowBlock, [&](int64_t b, int64_t begin, int64_t end) {
      int64_t total = 0;
      for (int64_t i = begin; i < end; ++i) total += degree(s, weight[size_t(i)]);
      partial[size_t(b)] = total;
    });
    int64_t total = 0;
    for (int64_t t : partial) total += t;
    return total;
  };
  double lo = 0, hi = 1;
  while (n > 0 && hi < 1e300 && degree_sum(hi) < target) hi *= 2;
  for (int it = 0; n > 0 && it < 64; ++it) {
    const double mid = 0.5 * (lo + hi);
    if (!(mid > lo && mid < hi)) break;
    const int64_t total = degree_sum(mid);
    if (total < target) {
      lo = mid;
    } else {
      hi = mid;
      if (total - target <= target / 1000000) break;  // within 1 ppm above the target
    }
  }
  // cumulative[i] = degree_0 + ... + degree_i: preferential picks by binary search.
  std::vector<int64_t> cumulative(static_cast<size_t>(n));
  int64_t total_degree = 0;
  for (int64_t i = 0; i < n; ++i) {
    total_degree += degree(hi, weight[size_t(i)]);
    cumulative[size_t(i)] = total_degree;
  }
  check_expected_nnz<I>(fn, double(total_degree));
  weight = std::vector<double>();

  // Each of a row's d draws is local with probability locality; the local ones are distinct
  // uniform nodes of the window. When the window has fewer nodes than that (hubs), the row is
  // topped up to d with preferential targets, so degrees hold and locality yields.
  Structure<I> s = build_rows<I>(
      fn, n, g.seed, kTargetStream, [&](int64_t r, Rng& rng, std::vector<int64_t>& out) {
        const int64_t d = cumulative[size_t(r)] - (r == 0 ? 0 : cumulative[size_t(r) - 1]);
        const int64_t near_lo = r - std::min(r, window);
        const int64_t near_count = r + std::min(n - 1 - r, window) - near_lo + 1;
        int64_t local = 0;
        for (int64_t k = 0; k < d; ++k) local += rng.uniform() < locality;
        sample_distinct(rng, near_lo, near_count, std::min(local, near_count), out);
        draw_distinct(d, out, [&] {
          const int64_t x = int64_t(rng.below(uint64_t(total_degree)));
          return int64_t(std::upper_bound(cumulative.begin(), cumulative.end(), x) -
                         cumulative.begin());
        });
      });
  return assemble<V, I>(n, n, std::move(s), g, false);
}

#define TSR_INSTANTIATE_GENERATORS(V, I)                                                           \
  template Csr<V, I> generate_rmat<V, I>(const RmatParams&, const GenValues&);                     \
  template Csr<V, I> generate_erdos_renyi<V, I>(int64_t, int64_t, double, const GenValues&);       \
  template Csr<V, I> generate_banded<V, I>(int64_t, int64_t, int64_t, const GenValues&);           \
  template Csr<V, I> generate_clustered<V, I>(int64_t, int64_t, double, double, const GenValues&); \
  template Csr<V, I> generate_power_law<V, I>(int64_t, double, double, double, int64_t,            \
                                              const GenValues&);
TSR_FOR_EACH_STORAGE_TYPE(TSR_INSTANTIATE_GENERATORS)
#undef TSR_INSTANTIATE_GENERATORS

}  // namespace tessera
