#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "formats/convert.h"
#include "formats/io.h"
#include "formats/stats.h"
#include "formats/validate.h"
#include "tests/test_util.h"

using namespace tessera;
using tessera::testing::awkward_shapes;
using tessera::testing::random_csr;
using ::testing::HasSubstr;
using tessera::testing::error_of;

namespace {

template <class V, class I>
void expect_same(const Csr<V, I>& a, const Csr<V, I>& b, const std::string& what) {
  ASSERT_EQ(a.rows, b.rows) << what;
  ASSERT_EQ(a.cols, b.cols) << what;
  ASSERT_EQ(a.indptr.to_vector(), b.indptr.to_vector()) << what;
  ASSERT_EQ(a.indices.to_vector(), b.indices.to_vector()) << what;
  const auto va = a.values.to_vector(), vb = b.values.to_vector();
  ASSERT_EQ(va.size(), vb.size()) << what;
  for (size_t i = 0; i < va.size(); ++i) {
    ASSERT_EQ(to_float(va[i]), to_float(vb[i])) << what << " value " << i;
  }
}

constexpr Format kAllFormats[] = {Format::coo, Format::csr, Format::csc, Format::bsr,
                                  Format::ell, Format::ragged, Format::hybrid};


}  // namespace

template <class T>
class FormatRoundTrip : public ::testing::Test {};
using IndexValuePairs = ::testing::Types<std::pair<float, int32_t>, std::pair<double, int64_t>,
                                         std::pair<bf16, int32_t>, std::pair<f16, int64_t>>;
TYPED_TEST_SUITE(FormatRoundTrip, IndexValuePairs);

TYPED_TEST(FormatRoundTrip, EveryFormatOnAwkwardShapes) {
  using V = typename TypeParam::first_type;
  using I = typename TypeParam::second_type;
  uint64_t seed = 100;
  for (const auto& [name, shape] : awkward_shapes()) {
    const Csr<V, I> csr = random_csr<V, I>(shape, ++seed);
    validate(csr);
    const Csr<V, I> sorted = canonicalize(csr);
    for (Format f : kAllFormats) {
      for (const ConvertParams& p :
           {ConvertParams{}, ConvertParams{3, 2, -1, HybParams{3, 2}},
            ConvertParams{1, 7, -1, HybParams{2, 0}}}) {
        const std::string what = name + " via " + format_name(f);
        const AnySparse<V, I> m = from_csr(csr, f, p);
        validate(m);
        EXPECT_EQ(format_of(m), f);
        // Column-major (csc), block (bsr) and column-partitioned (hybrid) formats order an
        // unsorted row's entries by column; the others keep the order exactly.
        const bool reorders = f == Format::bsr || f == Format::csc ||
                              (f == Format::hybrid && p.hyb.column_parts > 1);
        expect_same(reorders ? canonicalize(to_csr(m)) : to_csr(m), reorders ? sorted : csr, what);
        const FormatStats st = format_stats(m);
        EXPECT_EQ(st.nnz, csr.nnz()) << what;
        EXPECT_GE(st.stored, st.nnz) << what;
        EXPECT_GE(st.padding_ratio, 0.0);
        EXPECT_LT(st.padding_ratio, 1.0);
      }
    }
  }
}

TEST(FormatRoundTrip, XToCsrToXIsExact) {
  const Csr<float, int32_t> csr = random_csr<float, int32_t>({41, 37, 0.15, 0.2, 5}, 7);
  const Coo<float, int32_t> coo = csr_to_coo(csr);
  const Coo<float, int32_t> coo2 = csr_to_coo(coo_to_csr(coo));
  EXPECT_EQ(coo.row.to_vector(), coo2.row.to_vector());
  EXPECT_EQ(coo.col.to_vector(), coo2.col.to_vector());
  const Csc<float, int32_t> csc = csr_to_csc(csr);
  const Csc<float, int32_t> csc2 = csr_to_csc(csc_to_csr(csc));
  EXPECT_EQ(csc.indptr.to_vector(), csc2.indptr.to_vector());
  EXPECT_EQ(csc.indices.to_vector(), csc2.indices.to_vector());
  const Bsr<float, int32_t> bsr = csr_to_bsr(csr, 4, 3);
  const Bsr<float, int32_t> bsr2 = csr_to_bsr(bsr_to_csr(bsr), 4, 3);
  EXPECT_EQ(bsr.indices.to_vector(), bsr2.indices.to_vector());
  EXPECT_EQ(bsr.values.to_vector(), bsr2.values.to_vector());
  const Ell<float, int32_t> ell = csr_to_ell(csr);
  const Ell<float, int32_t> ell2 = csr_to_ell(ell_to_csr(ell), ell.width);
  EXPECT_EQ(ell.indices.to_vector(), ell2.indices.to_vector());
  EXPECT_EQ(ell.values.to_vector(), ell2.values.to_vector());
}

TEST(Hybrid, BucketsFollowHybCK) {
  // Row lengths 0, 1, 2, 3, 5, 9, 20 with k = 2 (widths 1, 2, 4) and one column range.
  std::vector<int32_t> indptr{0}, indices;
  std::vector<float> values;
  for (int len : {0, 1, 2, 3, 5, 9, 20}) {
    for (int j = 0; j < len; ++j) {
      indices.push_back(j);
      values.push_back(1.0f + j);
    }
    indptr.push_back(int32_t(indices.size()));
  }
  const Csr<float, int32_t> csr{7, 32, Buffer<int32_t>(indptr), Buffer<int32_t>(indices),
                                Buffer<float>(values)};
  const Hybrid<float, int32_t> h = csr_to_hybrid(csr, HybParams{1, 2});
  ASSERT_EQ(h.parts.size(), 3u);
  const auto widths = [&](size_t p) { return std::get<Ell<float, int32_t>>(h.parts[p].matrix).width; };
  EXPECT_EQ(widths(0), 1);
  EXPECT_EQ(h.parts[0].row_map.to_vector(), (std::vector<int32_t>{1}));
  EXPECT_EQ(widths(1), 2);
  EXPECT_EQ(h.parts[1].row_map.to_vector(), (std::vector<int32_t>{2}));
  EXPECT_EQ(widths(2), 4);
  // Rows 3 (len 3), 4 (len 5 -> 2 pieces), 5 (9 -> 3), 6 (20 -> 5).
  EXPECT_EQ(h.parts[2].row_map.to_vector(),
            (std::vector<int32_t>{3, 4, 4, 5, 5, 5, 6, 6, 6, 6, 6}));
  EXPECT_EQ(h.nnz(), csr.nnz());
  expect_same(hybrid_to_csr(h), csr, "hyb(1,2)");
  // Two column ranges: every part's columns stay in its range.
  const Hybrid<float, int32_t> h2 = csr_to_hybrid(csr, HybParams{2, 2});
  for (const auto& part : h2.parts) {
    const auto& ell = std::get<Ell<float, int32_t>>(part.matrix);
    for (size_t s = 0; s < ell.indices.size(); ++s) {
      if (ell.indices[s] == kPadIndex<int32_t>) continue;
      EXPECT_GE(ell.indices[s], part.col_begin);
      EXPECT_LT(ell.indices[s], part.col_end);
    }
  }
  expect_same(hybrid_to_csr(h2), csr, "hyb(2,2)");
  const FormatStats st = format_stats(AnySparse<float, int32_t>(h));
  EXPECT_EQ(st.nnz, csr.nnz());
  EXPECT_THAT(st.to_string(), HasSubstr("occupancy"));
}

TEST(Hybrid, GeneralPartsSumToTheMatrix) {
  // A hand-built hybrid: an ELL part and a CSR part that both add into row 1.
  Hybrid<float, int32_t> h{3, 4, {}};
  HybridPart<float, int32_t> ell_part;
  ell_part.col_begin = 0;
  ell_part.col_end = 2;
  ell_part.row_map = Buffer<int32_t>{0, 1};
  ell_part.matrix = Ell<float, int32_t>{2, 4, 1, Buffer<int32_t>{1, 0}, Buffer<float>{2.0f, 3.0f}};
  HybridPart<float, int32_t> csr_part;
  csr_part.col_begin = 2;
  csr_part.col_end = 4;
  csr_part.row_map = Buffer<int32_t>{1};
  csr_part.matrix = Csr<float, int32_t>{1, 4, Buffer<int32_t>{0, 2}, Buffer<int32_t>{2, 3},
                                        Buffer<float>{4.0f, 5.0f}};
  h.parts.push_back(std::move(ell_part));
  h.parts.push_back(std::move(csr_part));
  validate(h);
  const Csr<float, int32_t> csr = hybrid_to_csr(h);
  EXPECT_EQ(csr.indptr.to_vector(), (std::vector<int32_t>{0, 1, 4, 4}));
  EXPECT_EQ(csr.indices.to_vector(), (std::vector<int32_t>{1, 0, 2, 3}));
  EXPECT_EQ(csr.values.to_vector(), (std::vector<float>{2, 3, 4, 5}));
}

TEST(Ragged, NestedLevelsValidate) {
  Ragged<float, int32_t> r;
  r.levels.push_back(Buffer<int32_t>{0, 2, 3});     // 2 groups of segments
  r.levels.push_back(Buffer<int32_t>{0, 1, 4, 6});  // 3 segments
  r.values = Buffer<float>(6, 1.0f);
  validate_ragged(r, "r");
  EXPECT_EQ(r.segments(0), 2);
  EXPECT_EQ(r.segments(1), 3);
  r.levels[1][3] = 5;  // last offset no longer matches the value count
  EXPECT_THAT(error_of([&] { validate_ragged(r, "r"); }), HasSubstr("does not match"));
}

TEST(Validate, ReportsWhatAndWhere) {
  Csr<float, int32_t> m{2, 3, Buffer<int32_t>{0, 2, 3}, Buffer<int32_t>{0, 2, 5},
                        Buffer<float>{1, 2, 3}};
  EXPECT_THAT(error_of([&] { validate(m); }), HasSubstr("Csr.indices[2] = 5 is outside [0, 3) (row 1)"));
  m.indices[2] = 1;
  validate(m);
  m.indptr[1] = 4;
  EXPECT_THAT(error_of([&] { validate(m); }), HasSubstr("not monotone"));
  m.indptr[1] = 2;
  m.indptr[2] = 2;
  EXPECT_THAT(error_of([&] { validate(m); }), HasSubstr("does not match the entry count 3"));
  m.indptr[2] = 3;
  m.indices[0] = 2;
  m.indices[1] = 0;
  EXPECT_THAT(error_of([&] { validate(m, {true, false, false}); }), HasSubstr("row 0 is not sorted"));
  m.indices[0] = 2;
  m.indices[1] = 2;
  EXPECT_THAT(error_of([&] { validate(m, {false, true, false}); }), HasSubstr("repeats column 2"));
  m.indices[0] = 0;
  m.values[1] = std::nanf("");
  EXPECT_THAT(error_of([&] { validate(m, {false, false, true}); }), HasSubstr("not finite"));
  Ell<float, int32_t> ell{1, 2, 2, Buffer<int32_t>{0, kPadIndex<int32_t>}, Buffer<float>{1, 4}};
  EXPECT_THAT(error_of([&] { validate(ell); }), HasSubstr("padding must be zero"));
}

TEST(Validate, IndexTypeOverflowSuggestsInt64) {
  EXPECT_THAT(error_of([] { check_index_capacity<int32_t>(3'000'000'000LL, 5, 0, "A"); }),
              HasSubstr("use int64"));
  check_index_capacity<int64_t>(3'000'000'000LL, 5, 0, "A");
  const Csr<float, int64_t> big{3'000'000'000LL, 2, Buffer<int64_t>(), Buffer<int64_t>(), Buffer<float>()};
  EXPECT_THAT(error_of([&] { cast_indices<int32_t>(big); }), HasSubstr("int64"));
}

TEST(Convert, EllTooNarrowAndBadParams) {
  const Csr<float, int32_t> csr = random_csr<float, int32_t>({10, 10, 0.5}, 3);
  EXPECT_THAT(error_of([&] { csr_to_ell(csr, 1); }), HasSubstr("Hybrid"));
  EXPECT_THROW(csr_to_bsr(csr, 0, 2), Error);
  EXPECT_THROW(csr_to_hybrid(csr, HybParams{0, 2}), Error);
  EXPECT_THROW(parse_format("dia"), Error);
}

TEST(Convert, CanonicalizeSumsDuplicatesAndTransposeIsInvolution) {
  const Csr<double, int32_t> dup{1, 4, Buffer<int32_t>{0, 4}, Buffer<int32_t>{3, 1, 3, 0},
                                 Buffer<double>{1, 2, 3, 4}};
  const Csr<double, int32_t> c = canonicalize(dup);
  EXPECT_EQ(c.indices.to_vector(), (std::vector<int32_t>{0, 1, 3}));
  EXPECT_EQ(c.values.to_vector(), (std::vector<double>{4, 2, 4}));
  const Csr<double, int32_t> m = random_csr<double, int32_t>({23, 40, 0.2}, 9);
  expect_same(transpose(transpose(m)), m, "transpose twice");
  // Duplicates are summed in double and rounded once; a sum past the type's range is an error.
  const Csr<f16, int32_t> halves{2, 3, Buffer<int32_t>{0, 1, 4}, Buffer<int32_t>{0, 2, 2, 2},
                                 Buffer<f16>{f16(1.0f), f16(1.0f), f16(0.0004f), f16(0.0004f)}};
  // 1 + 0.0004 + 0.0004 rounded once is f16's 1.000977; rounded after each add it would stay 1.
  EXPECT_GT(to_float(canonicalize(halves).values.to_vector()[1]), 1.0f);
  const Csr<f16, int32_t> big{1, 2, Buffer<int32_t>{0, 2}, Buffer<int32_t>{1, 1},
                              Buffer<f16>{f16(60000.0f), f16(60000.0f)}};
  EXPECT_THAT(error_of([&] { canonicalize(big); }),
              HasSubstr("the 2 entries at row 0, column 1 sum to 120000, which overflows f16"));
}

TEST(RealMatrices, RoundTripEveryFormat) {
  const std::filesystem::path dir = std::filesystem::path(tessera::testing::shared_data_dir()) / "mtx";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << dir << " not present";
  int seen = 0;
  for (const char* name : {"add32", "bcsstk13", "ca-GrQc", "fidapex6", "luxembourg"}) {
    const auto path = dir / (std::string(name) + ".mtx");
    if (!std::filesystem::exists(path)) continue;
    ++seen;
    const Csr<float, int32_t> csr = canonicalize(coo_to_csr(read_matrix_market<float, int32_t>(path.string())));
    validate(csr, {true, true, true});
    for (Format f : kAllFormats) {
      const AnySparse<float, int32_t> m = from_csr(csr, f, ConvertParams{4, 4, -1, HybParams{4, 5}});
      Csr<float, int32_t> back = to_csr(m);
      if (f == Format::bsr) {
        // BSR drops stored zeros; compare against the matrix without them.
        std::vector<int32_t> ip{0}, ix;
        std::vector<float> vs;
        for (int64_t r = 0; r < csr.rows; ++r) {
          for (int32_t e = csr.indptr[r]; e < csr.indptr[r + 1]; ++e) {
            if (csr.values[e] != 0.0f) { ix.push_back(csr.indices[e]); vs.push_back(csr.values[e]); }
          }
          ip.push_back(int32_t(ix.size()));
        }
        expect_same(back, Csr<float, int32_t>{csr.rows, csr.cols, Buffer<int32_t>(ip), Buffer<int32_t>(ix), Buffer<float>(vs)}, name);
      } else {
        expect_same(back, csr, std::string(name) + " via " + format_name(f));
      }
    }
  }
  EXPECT_GT(seen, 0);
}
