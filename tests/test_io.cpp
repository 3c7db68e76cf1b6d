// Tests for formats/io: Matrix Market, edge lists and .npy, including every malformed-file error.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/random.h"
#include "formats/io.h"
#include "tests/test_util.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
class IoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    dir_ = fs::temp_directory_path() /
           ("tessera_test_io_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  std::string write_text(const std::string& name, const std::string& text) const {
    const std::string p = path(name);
    std::ofstream out(p, std::ios::binary);
    out << text;
    return p;
  }
  std::string write_bytes(const std::string& name, const std::vector<unsigned char>& bytes) const {
    const std::string p = path(name);
    std::ofstream out(p, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
    return p;
  }
  std::vector<std::string> files() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    return names;
  }

  fs::path dir_;
};

// Runs fn, expects a tessera::Error, and returns its message.
std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected tessera::Error, got std::exception: " << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected tessera::Error, nothing was thrown";
  return "";
}

void expect_contains(const std::string& msg, std::initializer_list<std::string> parts) {
  for (const std::string& part : parts) {
    EXPECT_NE(msg.find(part), std::string::npos) << "message lacks '" << part << "': " << msg;
  }
}

template <class V, class I>
struct Triplet {
  I r, c;
  V v;
};

template <class V, class I>
std::vector<Triplet<V, I>> triplets(const Coo<V, I>& m) {
  std::vector<Triplet<V, I>> t;
  for (int64_t e = 0; e < m.nnz(); ++e) t.push_back({m.row[e], m.col[e], m.values[e]});
  return t;
}

// Dense image of a COO matrix (duplicates summed), for order-independent comparisons.
template <class V, class I>
std::map<std::pair<int64_t, int64_t>, double> dense_map(const Coo<V, I>& m) {
  std::map<std::pair<int64_t, int64_t>, double> d;
  for (int64_t e = 0; e < m.nnz(); ++e) d[{m.row[e], m.col[e]}] += double(to_float(m.values[e]));
  return d;
}

// ---------------------------------------------------------------------------------------------
// Matrix Market: valid files.

TEST_F(IoTest, MatrixMarketGeneralReal) {
  const std::string p = write_text("a.mtx",
                                   "%%MatrixMarket matrix coordinate real general\n"
                                   "% a comment\n"
                                   "%\n"
                                   "3 4 4\n"
                                   "1 1 1.5\n"
                                   "3 4 -2e3\n"
                                   "2 2 .25\n"
                                   "1 1 +7\n");  // duplicates are kept
  MatrixMarketHeader h;
  const Coo<float, int32_t> m = read_matrix_market<float, int32_t>(p, &h);
  EXPECT_EQ(h.field, "real");
  EXPECT_EQ(h.symmetry, "general");
  EXPECT_EQ(m.rows, 3);
  EXPECT_EQ(m.cols, 4);
  ASSERT_EQ(m.nnz(), 4);
  const std::vector<int32_t> rows{0, 2, 1, 0}, cols{0, 3, 1, 0};
  const std::vector<float> vals{1.5f, -2000.f, 0.25f, 7.f};
  for (int e = 0; e < 4; ++e) {
    EXPECT_EQ(m.row[e], rows[e]) << e;
    EXPECT_EQ(m.col[e], cols[e]) << e;
    EXPECT_EQ(m.values[e], vals[e]) << e;
  }
}

TEST_F(IoTest, MatrixMarketBannerCaseCrlfBlankLinesAndInt64) {
  const std::string p = write_text("a.mtx",
                                   "%%matrixmarket MATRIX Coordinate REAL General\r\n"
                                   "\r\n"
                                   "%comment\r\n"
                                   "  2 2 2  \r\n"
                                   "1\t2   3.0\r\n"
                                   "\r\n"
                                   "2 1 4\r\n");
  const auto m = read_matrix_market<double, int64_t>(p);
  ASSERT_EQ(m.nnz(), 2);
  EXPECT_EQ(m.row[0], 0);
  EXPECT_EQ(m.col[0], 1);
  EXPECT_EQ(m.values[0], 3.0);
  EXPECT_EQ(m.row[1], 1);
  EXPECT_EQ(m.col[1], 0);
  EXPECT_EQ(m.values[1], 4.0);
}

TEST_F(IoTest, MatrixMarketSymmetricExpansion) {
  // Lower triangle plus diagonal; one entry in the upper triangle is accepted and mirrored too.
  const std::string p = write_text("s.mtx",
                                   "%%MatrixMarket matrix coordinate real symmetric\n"
                                   "3 3 4\n"
                                   "1 1 1\n"
                                   "2 1 2\n"
                                   "3 3 3\n"
                                   "2 3 5\n");
  MatrixMarketHeader h;
  const auto m = read_matrix_market<double, int32_t>(p, &h);
  EXPECT_EQ(h.symmetry, "symmetric");
  ASSERT_EQ(m.nnz(), 6);  // 2 * 4 - 2 diagonal
  const auto d = dense_map(m);
  const std::map<std::pair<int64_t, int64_t>, double> expected{
      {{0, 0}, 1}, {{1, 0}, 2}, {{0, 1}, 2}, {{2, 2}, 3}, {{1, 2}, 5}, {{2, 1}, 5}};
  EXPECT_EQ(d, expected);
}

TEST_F(IoTest, MatrixMarketSymmetricMirroredPairRejected) {
  // (1, 2) and (2, 1) in a symmetric file would each be mirrored onto the other: refused, naming
  // both entries. A plain duplicate on one side is kept (canonicalize sums it).
  const std::string p = write_text("m.mtx",
                                   "%%MatrixMarket matrix coordinate real symmetric\n"
                                   "3 3 4\n"
                                   "3 1 1\n"
                                   "1 2 2\n"
                                   "3 3 3\n"
                                   "2 1 4\n");
  expect_contains(error_of([&] { read_matrix_market<float, int64_t>(p); }),
                  {p, "entries 2 (1, 2) and 4 (2, 1) mirror each other"});
  const std::string dup = write_text("d.mtx",
                                     "%%MatrixMarket matrix coordinate real symmetric\n"
                                     "2 2 3\n"
                                     "2 1 1\n"
                                     "1 2 2\n"
                                     "1 2 5\n");
  expect_contains(error_of([&] { read_matrix_market<float, int32_t>(dup); }),
                  {"entries 1 (2, 1) and 2 (1, 2)"});
  const auto ok = read_matrix_market<float, int32_t>(write_text(
      "u.mtx", "%%MatrixMarket matrix coordinate real symmetric\n2 2 2\n2 1 1\n2 1 5\n"));
  EXPECT_EQ(ok.nnz(), 4);
}

TEST_F(IoTest, SparseFileOfEitherKindReadOnceFromAPipe) {
  // The kind is told from the bytes, which a pipe gives only once: a FIFO fed by a thread.
  const std::string mm = "%%MatrixMarket matrix coordinate real general\n3 3 2\n1 2 1.5\n3 1 2\n";
  const std::string edges = "# edges\n0 1\n1 2\n2 0\n";
  for (const std::string& text : {mm, edges}) {
    const std::string fifo = path("pipe");
    fs::remove(fifo);
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    std::thread writer([&] { std::ofstream(fifo, std::ios::binary) << text; });
    const Coo<float, int32_t> m = read_sparse_file<float, int32_t>(fifo);
    writer.join();
    EXPECT_EQ(m.rows, 3);
    EXPECT_EQ(m.nnz(), text == mm ? 2 : 3);
  }
  // A regular file named otherwise: its banner decides; a .MTX name decides too.
  EXPECT_EQ((read_sparse_file<float, int32_t>(write_text("m.txt", mm)).nnz()), 2);
  expect_contains(error_of([&] { read_sparse_file<float, int32_t>(write_text("e.MTX", edges)); }),
                  {"missing or bad banner"});
}

TEST_F(IoTest, ReadersRefuseDirectoriesAndDevices) {
  fs::create_directories(path("d.mtx"));
  expect_contains(error_of([&] { read_matrix_market<float, int32_t>(path("d.mtx")); }),
                  {path("d.mtx"), "is a directory"});
  expect_contains(error_of([&] { read_edge_list<float, int32_t>(path("d.mtx")); }), {"is a directory"});
  expect_contains(error_of([&] { read_npy<float>(path("d.mtx")); }), {"is a directory"});
  expect_contains(error_of([&] { read_vecs<float>(path("d.mtx")); }), {"is a directory"});
  expect_contains(error_of([&] { read_edge_list<float, int32_t>("/dev/zero"); }),
                  {"/dev/zero is a character device"});
}

TEST_F(IoTest, MatrixMarketPattern) {
  const std::string p = write_text("p.mtx",
                                   "%%MatrixMarket matrix coordinate pattern symmetric\n"
                                   "4 4 3\n"
                                   "2 1\n"
                                   "4 4\n"
                                   "4 3\n");
  MatrixMarketHeader h;
  const auto m = read_matrix_market<bf16, int32_t>(p, &h);
  EXPECT_EQ(h.field, "pattern");
  ASSERT_EQ(m.nnz(), 5);
  for (int64_t e = 0; e < m.nnz(); ++e) EXPECT_EQ(float(m.values[e]), 1.0f);
  const auto d = dense_map(m);
  EXPECT_EQ(d.count({0, 1}), 1u);
  EXPECT_EQ(d.count({1, 0}), 1u);
  EXPECT_EQ(d.count({3, 2}), 1u);
  EXPECT_EQ(d.count({2, 3}), 1u);
  EXPECT_EQ(d.count({3, 3}), 1u);
}

TEST_F(IoTest, MatrixMarketInteger) {
  const std::string p = write_text("i.mtx",
                                   "%%MatrixMarket matrix coordinate integer general\n"
                                   "2 3 3\n"
                                   "1 3 -5\n"
                                   "2 1 +12\n"
                                   "2 2 0\n");
  MatrixMarketHeader h;
  const auto m = read_matrix_market<f16, int64_t>(p, &h);
  EXPECT_EQ(h.field, "integer");
  ASSERT_EQ(m.nnz(), 3);
  EXPECT_EQ(float(m.values[0]), -5.f);
  EXPECT_EQ(float(m.values[1]), 12.f);
  EXPECT_EQ(float(m.values[2]), 0.f);
  EXPECT_EQ(m.col[0], 2);
}

TEST_F(IoTest, MatrixMarketEmptyMatrix) {
  const std::string p =
      write_text("e.mtx", "%%MatrixMarket matrix coordinate real general\n0 0 0\n");
  const auto m = read_matrix_market<float, int32_t>(p);
  EXPECT_EQ(m.rows, 0);
  EXPECT_EQ(m.cols, 0);
  EXPECT_EQ(m.nnz(), 0);
}

TEST_F(IoTest, MatrixMarketUnderflowRoundsToZeroForFloat) {
  const std::string p =
      write_text("u.mtx", "%%MatrixMarket matrix coordinate real general\n1 1 1\n1 1 1e-60\n");
  EXPECT_EQ((read_matrix_market<float, int32_t>(p).values[0]), 0.0f);
  EXPECT_EQ((read_matrix_market<double, int32_t>(p).values[0]), 1e-60);
}

// ---------------------------------------------------------------------------------------------
// Matrix Market: malformed files. Each case names the line the error must cite and a reason.

struct BadMtx {
  const char* name;
  const char* text;
  int line;
  const char* reason;
};

const BadMtx kBadMtx[] = {
    {"empty_file", "", 1, "banner"},
    {"missing_banner", "3 3 1\n1 1 1\n", 1, "banner"},
    {"bad_banner_word", "%%MatrixMarkt matrix coordinate real general\n1 1 1\n1 1 1\n", 1,
     "banner"},
    {"incomplete_banner", "%%MatrixMarket matrix coordinate real\n1 1 1\n1 1 1\n", 1,
     "incomplete banner"},
    {"array_format", "%%MatrixMarket matrix array real general\n2 2\n1\n2\n3\n4\n", 1, "array"},
    {"complex", "%%MatrixMarket matrix coordinate complex general\n1 1 1\n1 1 1 0\n", 1, "complex"},
    {"hermitian", "%%MatrixMarket matrix coordinate real hermitian\n1 1 1\n1 1 1\n", 1,
     "hermitian"},
    {"skew", "%%MatrixMarket matrix coordinate real skew-symmetric\n1 1 1\n1 1 1\n", 1,
     "skew-symmetric"},
    {"banner_trailing", "%%MatrixMarket matrix coordinate real general extra\n1 1 1\n1 1 1\n", 1,
     "trailing"},
    {"missing_size_line", "%%MatrixMarket matrix coordinate real general\n% only comments\n", 3,
     "size line"},
    {"size_two_fields", "%%MatrixMarket matrix coordinate real general\n%c\n3 3\n1 1 1\n", 3,
     "size line"},
    {"size_non_numeric", "%%MatrixMarket matrix coordinate real general\n3 x 1\n1 1 1\n", 2,
     "non-numeric cols"},
    {"size_negative", "%%MatrixMarket matrix coordinate real general\n3 -3 1\n1 1 1\n", 2,
     "negative size"},
    {"size_trailing", "%%MatrixMarket matrix coordinate real general\n3 3 1 7\n1 1 1\n", 2,
     "trailing"},
    {"size_huge", "%%MatrixMarket matrix coordinate real general\n99999999999999999999 3 1\n", 2,
     "out of range"},
    {"symmetric_not_square", "%%MatrixMarket matrix coordinate real symmetric\n3 4 1\n1 1 1\n", 2,
     "square"},
    {"index_non_numeric", "%%MatrixMarket matrix coordinate real general\n3 3 2\n1 1 1\n1 a 1\n", 4,
     "non-numeric column index"},
    {"index_zero", "%%MatrixMarket matrix coordinate real general\n3 3 2\n1 1 1\n0 1 1\n", 4,
     "1-based"},
    {"row_past_size", "%%MatrixMarket matrix coordinate real general\n3 3 2\n1 1 1\n4 1 1\n", 4,
     "past the size"},
    {"col_past_size", "%%MatrixMarket matrix coordinate real general\n3 2 2\n1 1 1\n1 3 1\n", 4,
     "past the size"},
    {"index_negative", "%%MatrixMarket matrix coordinate real general\n3 3 2\n1 1 1\n-1 1 1\n", 4,
     "negative row index"},
    {"missing_column", "%%MatrixMarket matrix coordinate real general\n3 3 2\n1 1 1\n2\n", 4,
     "missing column index"},
    {"missing_value", "%%MatrixMarket matrix coordinate real general\n3 3 2\n1 1 1\n2 2\n", 4,
     "missing value"},
    {"value_non_numeric", "%%MatrixMarket matrix coordinate real general\n3 3 2\n1 1 1\n2 2 x1\n",
     4, "non-numeric value"},
    {"value_nan", "%%MatrixMarket matrix coordinate real general\n3 3 2\n1 1 1\n2 2 nan\n", 4,
     "NaN or Inf"},
    {"value_inf", "%%MatrixMarket matrix coordinate real general\n3 3 2\n1 1 -inf\n2 2 1\n", 3,
     "NaN or Inf"},
    {"value_overflow", "%%MatrixMarket matrix coordinate real general\n3 3 1\n1 1 1e999\n", 3,
     "overflows"},
    {"integer_not_integer", "%%MatrixMarket matrix coordinate integer general\n3 3 1\n1 1 1.5\n", 3,
     "not an integer"},
    {"truncated", "%%MatrixMarket matrix coordinate real general\n3 3 3\n1 1 1\n2 2 2\n", 5,
     "truncated"},
    {"truncated_huge_count",
     "%%MatrixMarket matrix coordinate real general\n3 3 1000000000\n1 1 1\n", 4, "truncated"},
    {"too_many_entries",
     "%%MatrixMarket matrix coordinate real general\n3 3 2\n1 1 1\n2 2 2\n%c\n3 3 3\n", 6,
     "too many entries"},
    {"trailing_garbage", "%%MatrixMarket matrix coordinate real general\n3 3 2\n1 1 1\n2 2 2 x\n",
     4, "trailing text"},
    {"pattern_trailing", "%%MatrixMarket matrix coordinate pattern general\n3 3 1\n1 1 1\n", 3,
     "trailing text"},
};

TEST_F(IoTest, MatrixMarketMalformed) {
  for (const BadMtx& bad : kBadMtx) {
    SCOPED_TRACE(bad.name);
    const std::string p = write_text(std::string(bad.name) + ".mtx", bad.text);
    const std::string msg = error_of([&] { read_matrix_market<float, int32_t>(p); });
    expect_contains(msg, {p, "line " + std::to_string(bad.line) + ":", bad.reason});
  }
}

TEST_F(IoTest, MatrixMarketValueOverflowsF16) {
  const std::string p =
      write_text("h.mtx", "%%MatrixMarket matrix coordinate real general\n1 1 1\n1 1 1e6\n");
  expect_contains(error_of([&] { read_matrix_market<f16, int32_t>(p); }),
                  {"line 3", "overflows f16"});
  EXPECT_EQ((read_matrix_market<float, int32_t>(p).values[0]), 1e6f);
}

TEST_F(IoTest, MatrixMarketMissingFile) {
  const std::string p = path("does_not_exist.mtx");
  expect_contains(error_of([&] { read_matrix_market<float, int32_t>(p); }), {p, "cannot open"});
}

TEST_F(IoTest, MatrixMarketSizesOverflowInt32) {
  const std::string rows_big = write_text(
      "r.mtx", "%%MatrixMarket matrix coordinate real general\n3000000000 2 1\n3000000000 1 5\n");
  expect_contains(error_of([&] { read_matrix_market<float, int32_t>(rows_big); }),
                  {rows_big, "line 2", "rows = 3000000000", "int64"});
  const auto m = read_matrix_market<float, int64_t>(rows_big);
  EXPECT_EQ(m.rows, 3000000000);
  ASSERT_EQ(m.nnz(), 1);
  EXPECT_EQ(m.row[0], 2999999999);

  const std::string cols_big =
      write_text("c.mtx", "%%MatrixMarket matrix coordinate real general\n2 2147483648 0\n");
  expect_contains(error_of([&] { read_matrix_market<double, int32_t>(cols_big); }),
                  {"line 2", "cols", "int64"});
  const std::string nnz_big =
      write_text("n.mtx", "%%MatrixMarket matrix coordinate real general\n2 2 2147483648\n");
  expect_contains(error_of([&] { read_matrix_market<double, int32_t>(nnz_big); }),
                  {"line 2", "nnz", "int64"});
  // With int64 indices the same file fails later, as truncated.
  expect_contains(error_of([&] { read_matrix_market<double, int64_t>(nnz_big); }),
                  {"line 3", "truncated"});
}

// ---------------------------------------------------------------------------------------------
// Matrix Market: writer.

// Random CSR with sorted columns and values spread over many magnitudes.
template <class V, class I>
Csr<V, I> random_csr(int64_t rows, int64_t cols, uint64_t seed) {
  Rng rng(seed);
  std::vector<I> indptr{0}, indices;
  std::vector<V> values;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      if (rng.uniform() < 0.2) {
        indices.push_back(I(c));
        const double mag = std::pow(10.0, rng.uniform(-30, 30));
        values.push_back(from_float<V>((rng.uniform() < 0.5 ? -1 : 1) * rng.uniform() * mag));
      }
    }
    indptr.push_back(I(indices.size()));
  }
  return {rows, cols, Buffer<I>(indptr), Buffer<I>(indices), Buffer<V>(values)};
}

template <class V, class I>
void expect_round_trip(const std::string& p, const Csr<V, I>& a) {
  write_matrix_market(p, a);
  MatrixMarketHeader h;
  const Coo<V, I> b = read_matrix_market<V, I>(p, &h);
  EXPECT_EQ(h.field, "real");
  EXPECT_EQ(h.symmetry, "general");
  EXPECT_EQ(b.rows, a.rows);
  EXPECT_EQ(b.cols, a.cols);
  ASSERT_EQ(b.nnz(), a.nnz());
  int64_t e = 0;
  for (int64_t r = 0; r < a.rows; ++r) {
    for (int64_t k = a.indptr[r]; k < a.indptr[r + 1]; ++k, ++e) {
      ASSERT_EQ(b.row[e], r);
      ASSERT_EQ(b.col[e], a.indices[k]);
      // Bitwise equality: the written decimal must round-trip exactly.
      ASSERT_EQ(std::memcmp(&b.values[e], &a.values[k], sizeof(V)), 0)
          << "entry " << e << ": wrote " << to_float(a.values[k]) << ", read "
          << to_float(b.values[e]);
    }
  }
}

TEST_F(IoTest, MatrixMarketRoundTripFloat) {
  expect_round_trip(path("f.mtx"), random_csr<float, int32_t>(60, 70, 1));
}

TEST_F(IoTest, MatrixMarketRoundTripDouble) {
  expect_round_trip(path("d.mtx"), random_csr<double, int64_t>(60, 70, 2));
}

TEST_F(IoTest, MatrixMarketRoundTripHalfTypes) {
  // Magnitudes within f16 range so no value is inf.
  Csr<f16, int32_t> h = random_csr<f16, int32_t>(30, 30, 3);
  for (auto& v : h.values) {
    if (!std::isfinite(float(v))) v = f16(1.5f);
  }
  expect_round_trip(path("h.mtx"), h);
  expect_round_trip(path("b.mtx"), random_csr<bf16, int64_t>(30, 30, 4));
}

TEST_F(IoTest, MatrixMarketRoundTripEmptyRows) {
  Csr<float, int32_t> a{4, 3, Buffer<int32_t>{0, 0, 2, 2, 3}, Buffer<int32_t>{0, 2, 1},
                        Buffer<float>{1.f / 3, -0.0f, 1e-40f}};  // includes -0 and a subnormal
  expect_round_trip(path("e.mtx"), a);
}

TEST_F(IoTest, WritersRefuseSpecialFilesAndFollowLinks) {
  const Csr<float, int32_t> a = random_csr<float, int32_t>(4, 4, 3);
  fs::create_directories(path("dir"));
  expect_contains(error_of([&] { write_matrix_market(path("dir"), a); }),
                  {path("dir"), "is a directory; refusing to replace it"});
  ASSERT_EQ(::mkfifo(path("fifo").c_str(), 0600), 0);
  expect_contains(error_of([&] { write_matrix_market(path("fifo"), a); }), {"is a FIFO"});
  EXPECT_TRUE(fs::is_fifo(path("fifo")));
  expect_contains(error_of([&] { write_matrix_market("", a); }), {"output path is empty"});
  expect_contains(error_of([&] { write_matrix_market("/dev/stdout", a); }),
                  {"names an open file descriptor"});
  expect_contains(error_of([&] { write_matrix_market(path("no_dir/x.mtx"), a); }),
                  {"no_dir/x.mtx", "No such file"});
  // A link is written through (a dangling one creates its target) and stays a link; a replaced
  // file keeps its permission bits.
  fs::create_symlink("target.mtx", path("link.mtx"));
  write_matrix_market(path("link.mtx"), a);
  EXPECT_TRUE(fs::is_symlink(path("link.mtx")));
  EXPECT_EQ((read_matrix_market<float, int32_t>(path("target.mtx")).nnz()), a.nnz());
  fs::permissions(path("target.mtx"), fs::perms::owner_read | fs::perms::owner_write);
  write_matrix_market(path("link.mtx"), random_csr<float, int32_t>(2, 2, 4));
  EXPECT_EQ(fs::status(path("target.mtx")).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ((read_matrix_market<float, int32_t>(path("target.mtx")).rows), 2);
  EXPECT_EQ(output_destination(path("link.mtx"), "test"), path("target.mtx"));
}

TEST_F(IoTest, MatrixMarketWriterLeavesNoTempFiles) {
  const std::string p = path("w.mtx");
  write_matrix_market(p, random_csr<float, int32_t>(10, 10, 5));
  write_matrix_market(p, random_csr<float, int32_t>(5, 5, 6));  // overwrite in place
  EXPECT_EQ(files(), std::vector<std::string>{"w.mtx"});
  EXPECT_EQ((read_matrix_market<float, int32_t>(p).rows), 5);
}

TEST_F(IoTest, MatrixMarketWriterFailureKeepsOldFile) {
  const std::string p = path("w.mtx");
  write_matrix_market(p, random_csr<float, int32_t>(5, 5, 7));
  Csr<float, int32_t> bad = random_csr<float, int32_t>(5, 5, 8);
  ASSERT_GT(bad.nnz(), 0);
  bad.values[bad.nnz() - 1] = std::nanf("");
  expect_contains(error_of([&] { write_matrix_market(p, bad); }), {p, "NaN"});
  EXPECT_EQ(files(), std::vector<std::string>{"w.mtx"});
  EXPECT_EQ((read_matrix_market<float, int32_t>(p).rows), 5);
}

TEST_F(IoTest, MatrixMarketWriterCannotOpen) {
  const std::string p = path("no_such_dir/x.mtx");
  expect_contains(error_of([&] { write_matrix_market(p, random_csr<float, int32_t>(3, 3, 9)); }),
                  {p, "cannot write", "No such file"});
}

// ---------------------------------------------------------------------------------------------
// Matrix Market: the shared SuiteSparse files.

struct MtxFacts {
  int64_t rows = 0, cols = 0, entries = 0, diagonal = 0;
  bool symmetric = false;
};

// An independent, simple reader of the banner, the size line and the diagonal count.
MtxFacts scan_mtx(const std::string& p) {
  std::ifstream in(p);
  std::string line;
  std::getline(in, line);
  MtxFacts f;
  f.symmetric = line.find("symmetric") != std::string::npos;
  while (std::getline(in, line) && (line.empty() || line[0] == '%')) {
  }
  std::istringstream(line) >> f.rows >> f.cols >> f.entries;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '%') continue;
    int64_t r = 0, c = 0;
    std::istringstream(line) >> r >> c;
    f.diagonal += r == c;
  }
  return f;
}

TEST(IoSharedData, SuiteSparseMatrices) {
  const fs::path dir = fs::path(tessera::testing::shared_data_dir()) / "mtx";
  if (!fs::is_directory(dir)) GTEST_SKIP() << dir << " is absent";
  // Expanded nnz from the data set's README (verified there with scipy.io.mmread).
  const std::map<std::string, int64_t> readme_nnz{{"add32", 23884},     {"bcsstk13", 83883},
                                                  {"bcsstk33", 591904}, {"ca-GrQc", 28980},
                                                  {"fidapex6", 49533},  {"luxembourg", 239332}};
  for (const auto& [name, nnz] : readme_nnz) {
    SCOPED_TRACE(name);
    const std::string p = (dir / (name + ".mtx")).string();
    ASSERT_TRUE(fs::exists(p));
    const MtxFacts f = scan_mtx(p);
    const int64_t expected = f.symmetric ? 2 * f.entries - f.diagonal : f.entries;
    EXPECT_EQ(expected, nnz);
    MatrixMarketHeader h;
    const auto m = read_matrix_market<float, int32_t>(p, &h);
    EXPECT_EQ(h.symmetry, f.symmetric ? "symmetric" : "general");
    EXPECT_EQ(m.rows, f.rows);
    EXPECT_EQ(m.cols, f.cols);
    EXPECT_EQ(m.nnz(), expected);
    for (int64_t e = 0; e < m.nnz(); ++e) {
      ASSERT_TRUE(m.row[e] >= 0 && m.row[e] < m.rows && m.col[e] >= 0 && m.col[e] < m.cols);
      ASSERT_TRUE(std::isfinite(m.values[e]));
    }
    const auto m64 = read_matrix_market<double, int64_t>(p);
    EXPECT_EQ(m64.nnz(), expected);
  }
}

// ---------------------------------------------------------------------------------------------
// Edge lists.

TEST_F(IoTest, EdgeListCommentsAndWeights) {
  const std::string p = write_text("g.txt",
                                   "# SNAP header\n"
                                   "% another comment\n"
                                   "\n"
                                   "0 1\n"
                                   "  3\t2 0.5\n"
                                   "2 2 -1.25\r\n"
                                   "   # indented comment\n");
  const auto m = read_edge_list<float, int32_t>(p);
  EXPECT_EQ(m.rows, 4);
  EXPECT_EQ(m.cols, 4);
  ASSERT_EQ(m.nnz(), 3);
  const std::vector<int32_t> rows{0, 3, 2}, cols{1, 2, 2};
  const std::vector<float> vals{1.f, 0.5f, -1.25f};
  for (int e = 0; e < 3; ++e) {
    EXPECT_EQ(m.row[e], rows[e]);
    EXPECT_EQ(m.col[e], cols[e]);
    EXPECT_EQ(m.values[e], vals[e]);
  }
}

TEST_F(IoTest, EdgeListSymmetrize) {
  const std::string p = write_text("g.txt", "0 1 2\n1 1 3\n2 0\n");
  EdgeListOptions o;
  o.symmetrize = true;
  const auto m = read_edge_list<double, int64_t>(p, o);
  EXPECT_EQ(m.rows, 3);
  ASSERT_EQ(m.nnz(), 5);  // the self loop is not mirrored
  const std::map<std::pair<int64_t, int64_t>, double> expected{
      {{0, 1}, 2}, {{1, 0}, 2}, {{1, 1}, 3}, {{2, 0}, 1}, {{0, 2}, 1}};
  EXPECT_EQ(dense_map(m), expected);
}

TEST_F(IoTest, EdgeListCompactIds) {
  const std::string p = write_text("g.txt", "100 7\n7 5000000000\n100 100\n");
  EdgeListOptions o;
  o.compact_ids = true;
  const auto m = read_edge_list<float, int32_t>(p, o);  // raw ids exceed int32; compacted fit
  EXPECT_EQ(m.rows, 3);
  ASSERT_EQ(m.nnz(), 3);
  EXPECT_EQ(triplets(m)[0].r, 0);
  EXPECT_EQ(triplets(m)[0].c, 1);
  EXPECT_EQ(triplets(m)[1].r, 1);
  EXPECT_EQ(triplets(m)[1].c, 2);
  EXPECT_EQ(triplets(m)[2].r, 0);
  EXPECT_EQ(triplets(m)[2].c, 0);

  o.num_nodes = 10;
  EXPECT_EQ((read_edge_list<float, int32_t>(p, o).rows), 10);
  o.num_nodes = 2;
  expect_contains(error_of([&] { read_edge_list<float, int32_t>(p, o); }),
                  {p, "line 2", "distinct ids"});
}

TEST_F(IoTest, EdgeListNumNodes) {
  const std::string p = write_text("g.txt", "# c\n0 1\n1 4\n");
  EdgeListOptions o;
  o.num_nodes = 8;
  const auto m = read_edge_list<float, int32_t>(p, o);
  EXPECT_EQ(m.rows, 8);
  EXPECT_EQ(m.cols, 8);
  o.num_nodes = 4;
  expect_contains(error_of([&] { read_edge_list<float, int32_t>(p, o); }),
                  {p, "line 3", "id 4", "num_nodes = 4"});
}

TEST_F(IoTest, EdgeListEmpty) {
  const auto m = read_edge_list<float, int32_t>(write_text("g.txt", "# nothing\n"));
  EXPECT_EQ(m.rows, 0);
  EXPECT_EQ(m.nnz(), 0);
}

TEST_F(IoTest, EdgeListMalformed) {
  const struct {
    const char* name;
    const char* text;
    int line;
    const char* reason;
  } cases[] = {
      {"negative", "0 1\n# c\n-1 2\n", 3, "negative source id"},
      {"non_numeric", "0 1\n1 x\n", 2, "non-numeric target id"},
      {"float_id", "0 1.5\n", 1, "non-numeric target id"},
      {"one_column", "0 1\n7\n", 2, "one column"},
      {"four_columns", "0 1 1 1\n", 1, "found more"},
      {"bad_weight", "0 1 w\n", 1, "non-numeric value"},
      {"nan_weight", "\n0 1 nan\n", 2, "NaN or Inf"},
      {"int32_id", "0 3000000000\n", 1, "int64"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string p = write_text(std::string(c.name) + ".txt", c.text);
    expect_contains(error_of([&] { read_edge_list<float, int32_t>(p); }),
                    {p, "line " + std::to_string(c.line) + ":", c.reason});
  }
  EXPECT_EQ((read_edge_list<float, int64_t>(write_text("big.txt", "0 3000000000\n")).rows),
            3000000001);
}

// ---------------------------------------------------------------------------------------------
// .npy

template <class T>
DenseMatrix<T> random_dense(int64_t rows, int64_t cols, uint64_t seed) {
  Rng rng(seed);
  DenseMatrix<T> m(rows, cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      if constexpr (std::is_integral_v<T>) {
        m(r, c) = T(int64_t(rng.next()) >> (sizeof(T) == 4 ? 32 : 0));
      } else {
        m(r, c) = from_float<T>(rng.uniform(-100, 100));
      }
    }
  }
  return m;
}

template <class T>
void expect_npy_round_trip(const std::string& p, int64_t rows, int64_t cols) {
  const DenseMatrix<T> a = random_dense<T>(rows, cols, 42);
  write_npy(p, a.view());
  // Data starts on a 64-byte boundary.
  EXPECT_EQ(
      (fs::file_size(p) - size_t(rows * cols) * (std::is_same_v<T, bf16> ? 4 : sizeof(T))) % 64,
      0u);
  const DenseMatrix<T> b = read_npy<T>(p);
  ASSERT_EQ(b.rows(), rows);
  ASSERT_EQ(b.cols(), cols);
  if (rows * cols > 0) {
    EXPECT_EQ(std::memcmp(a.data(), b.data(), size_t(rows * cols) * sizeof(T)), 0);
  }
}

TEST_F(IoTest, NpyRoundTrips) {
  expect_npy_round_trip<float>(path("f4.npy"), 17, 5);
  expect_npy_round_trip<double>(path("f8.npy"), 3, 9);
  expect_npy_round_trip<f16>(path("f2.npy"), 8, 8);
  expect_npy_round_trip<bf16>(path("bf16.npy"), 4, 6);  // stored as f4
  expect_npy_round_trip<int32_t>(path("i4.npy"), 11, 2);
  expect_npy_round_trip<int64_t>(path("i8.npy"), 2, 13);
  expect_npy_round_trip<float>(path("empty.npy"), 0, 4);
  EXPECT_EQ(files().size(), 7u);  // no temp files left
}

TEST_F(IoTest, NpyWritesStridedView) {
  DenseMatrix<float> big = random_dense<float>(4, 6, 7);
  DenseView<const float> sub{4, 3, 6, big.data() + 2, MemorySpace::host};  // columns 2..4
  write_npy(path("s.npy"), sub);
  const auto m = read_npy<float>(path("s.npy"));
  ASSERT_EQ(m.rows(), 4);
  ASSERT_EQ(m.cols(), 3);
  for (int r = 0; r < 4; ++r) {
    for (int c = 0; c < 3; ++c) EXPECT_EQ(m(r, c), big(r, c + 2));
  }
}

TEST_F(IoTest, NpyConversions) {
  DenseMatrix<int32_t> a(2, 3);
  for (int i = 0; i < 6; ++i) a.data()[i] = i * 1000 - 2500;
  write_npy(path("i4.npy"), std::as_const(a).view());
  const auto d = read_npy<double>(path("i4.npy"));
  const auto h = read_npy<f16>(path("i4.npy"));
  const auto l = read_npy<int64_t>(path("i4.npy"));
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(d.data()[i], a.data()[i]);
    EXPECT_EQ(float(h.data()[i]), float(a.data()[i]));
    EXPECT_EQ(l.data()[i], a.data()[i]);
  }
  DenseMatrix<float> f(1, 2);
  f(0, 0) = 1.5f;
  f(0, 1) = -3.0f;
  write_npy(path("f4.npy"), std::as_const(f).view());
  const auto fd = read_npy<double>(path("f4.npy"));
  EXPECT_EQ(fd(0, 1), -3.0);
  expect_contains(error_of([&] { read_npy<int32_t>(path("f4.npy")); }),
                  {path("f4.npy"), "floating-point"});
  DenseMatrix<int64_t> big(1, 1);
  big(0, 0) = int64_t(1) << 40;
  write_npy(path("i8.npy"), std::as_const(big).view());
  expect_contains(error_of([&] { read_npy<int32_t>(path("i8.npy")); }), {"overflows i32"});
}

// A .npy file with the given header dict (version 1.0 or 2.0) followed by data bytes.
std::vector<unsigned char> npy_bytes(const std::string& dict,
                                     const std::vector<unsigned char>& data, int major = 1) {
  std::string header = dict;
  const size_t prefix = major == 1 ? 10 : 12;
  while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::vector<unsigned char> out{0x93, 'N', 'U', 'M', 'P', 'Y', uint8_t(major), 0};
  for (size_t b = 0; b < prefix - 8; ++b) out.push_back(uint8_t(header.size() >> (8 * b)));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

std::vector<unsigned char> raw_bytes(const void* p, size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  return {b, b + n};
}

TEST_F(IoTest, NpyHandWrittenHeaders) {
  const double d[3] = {1.0, -2.5, 1e300};
  // 1-D, version 2.0, double quotes, no trailing comma: an n x 1 matrix.
  const auto p1 = write_bytes(
      "v2.npy", npy_bytes("{\"descr\": \"<f8\", \"shape\": (3,), \"fortran_order\": False}",
                          raw_bytes(d, sizeof d), 2));
  const auto m = read_npy<double>(p1);
  ASSERT_EQ(m.rows(), 3);
  ASSERT_EQ(m.cols(), 1);
  EXPECT_EQ(m(2, 0), 1e300);
  // |u1 bytes.
  const auto p2 = write_bytes(
      "u1.npy",
      npy_bytes("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2), }", {0, 1, 200, 255}));
  const auto u = read_npy<int32_t>(p2);
  EXPECT_EQ(u(1, 0), 200);
  EXPECT_EQ(u(1, 1), 255);
  const auto uf = read_npy<float>(p2);
  EXPECT_EQ(uf(1, 1), 255.f);
}

TEST_F(IoTest, NpyValuesThatOverflowTheTargetType) {
  const double d[2] = {1.0, 1e300};
  const auto p = write_bytes(
      "big.npy", npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", raw_bytes(d, sizeof d)));
  EXPECT_EQ((read_npy<double>(p)(1, 0)), 1e300);
  expect_contains(error_of([&] { read_npy<float>(p); }), {p, "element 1 = 1e+300 overflows f32"});
}

TEST_F(IoTest, NpyMalformed) {
  const float x[6] = {1, 2, 3, 4, 5, 6};
  const auto data = raw_bytes(x, sizeof x);
  const auto whole = npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", data);
  const struct {
    const char* name;
    std::vector<unsigned char> bytes;
    const char* reason;
  } cases[] = {
      {"bad_magic", {'N', 'U', 'M', 'P', 'Y', 0, 1, 0, 10, 0, 0, 0}, "bad magic"},
      {"short_file", {0x93, 'N', 'U'}, "bad magic"},
      {"bad_version",
       npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", data, 9),
       "version 9"},
      {"truncated_data",
       npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), }", data), "truncated"},
      {"truncated_header", std::vector<unsigned char>(whole.begin(), whole.begin() + 40),
       "truncated header"},
      {"fortran", npy_bytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", data),
       "Fortran"},
      {"three_d", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3), }", data),
       "3-D"},
      {"zero_d", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", data), "0-D"},
      {"big_endian", npy_bytes("{'descr': '>f4', 'fortran_order': False, 'shape': (6,), }", data),
       "big-endian"},
      {"complex", npy_bytes("{'descr': '<c8', 'fortran_order': False, 'shape': (3,), }", data),
       "unsupported dtype '<c8'"},
      {"missing_shape", npy_bytes("{'descr': '<f4', 'fortran_order': False, }", data), "'shape'"},
      {"bad_dict", npy_bytes("{'descr': '<f4' 'fortran_order': False, 'shape': (6,), }", data),
       "expected ',' or '}'"},
      {"bad_dim", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (-6,), }", data),
       "bad dimension"},
      {"trailing", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }", data),
       "4 bytes past the end of the data"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string p = write_bytes(std::string(c.name) + ".npy", c.bytes);
    expect_contains(error_of([&] { read_npy<float>(p); }), {p, c.reason});
  }
}

}  // namespace
}  // namespace tessera
