// File formats: Matrix Market coordinate files, SNAP-style edge lists and .npy arrays.
//
// Text readers load the whole file into memory and parse it in place (std::from_chars, no
// iostreams). Every error names the function, the path and the line (text) or byte offset (.npy).
// Writers fill a temp file in the destination's directory and rename it over the destination, so
// a failed write never leaves a partial file under the final name.
#include "formats/io.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "core/error.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "formats/io.cpp reads and writes little-endian .npy data and assumes a little-endian host"
#endif

namespace tessera {

namespace {

// ---------------------------------------------------------------------------------------------
// Small helpers.

template <class I>
const char* index_name() {
  return sizeof(I) == 4 ? "int32" : "int64";
}

template <class V>
const char* value_name() {
  return dtype_name(dtype_of<V>());
}

// Type a text value is parsed in: double for double, float otherwise (correctly rounded once).
template <class V>
using ParseType = std::conditional_t<std::is_same_v<V, double>, double, float>;

template <class V>
bool is_finite(V v) {
  return std::isfinite(double(to_float(v)));
}

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Quotes a token for a message, clipped so a huge garbage line does not flood the message.
std::string quoted(std::string_view s) {
  constexpr size_t kMax = 40;
  if (s.size() <= kMax) return "'" + std::string(s) + "'";
  return "'" + std::string(s.substr(0, kMax)) + "...'";
}

std::string errno_text() { return std::strerror(errno); }

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<FILE, FileCloser>;

const char* file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a regular file";
}

// Opens a regular file or a pipe (so `<(zcat m.mtx.gz)` works); directories and devices are
// refused by name rather than read as garbage or, for /dev/zero, without end.
FilePtr open_for_reading(const std::string& path, const char* who) {
  struct stat before {};  // refused before opening: opening some devices has side effects
  if (::stat(path.c_str(), &before) == 0) {
    TSR_CHECK(S_ISREG(before.st_mode) || S_ISFIFO(before.st_mode), who, ": ", path, " is ",
              file_kind(before.st_mode), ", not a file to read");
  }
  FilePtr f(std::fopen(path.c_str(), "rb"));
  TSR_CHECK(f != nullptr, who, ": cannot open ", path, " for reading: ", errno_text());
  struct stat st {};
  TSR_CHECK(::fstat(::fileno(f.get()), &st) == 0, who, ": cannot stat ", path, ": ", errno_text());
  TSR_CHECK(S_ISREG(st.st_mode) || S_ISFIFO(st.st_mode), who, ": ", path, " is ",
            file_kind(st.st_mode), ", not a file to read");
  return f;
}

// The whole file as bytes.
std::string read_whole_file(const std::string& path, const char* who) {
  FilePtr f = open_for_reading(path, who);
  std::string text;
  if (std::fseek(f.get(), 0, SEEK_END) == 0) {
    const long size = std::ftell(f.get());
    if (size > 0) text.reserve(size_t(size) + (size_t(1) << 20));
    std::rewind(f.get());
  }
  constexpr size_t kChunk = size_t(1) << 20;
  for (;;) {
    const size_t old = text.size();
    text.resize(old + kChunk);
    const size_t got = std::fread(&text[old], 1, kChunk, f.get());
    text.resize(old + got);
    if (got < kChunk) break;
  }
  TSR_CHECK(!std::ferror(f.get()), who, ": error reading ", path, ": ", errno_text());
  return text;
}

// Splits text into lines and reports errors at the current line: "who: path: line N: reason".
class LineSource {
 public:
  LineSource(const char* who, const std::string& path, std::string_view text)
      : who_(who), path_(path), text_(text) {}

  // Sets *line to the next line without its terminator ("\n" or "\r\n"); false at end of input.
  bool next(std::string_view* line) {
    if (pos_ >= text_.size()) return false;
    const char* begin = text_.data() + pos_;
    const size_t left = text_.size() - pos_;
    const void* nl = std::memchr(begin, '\n', left);
    size_t len = nl ? size_t(static_cast<const char*>(nl) - begin) : left;
    pos_ += nl ? len + 1 : len;
    ++line_;
    if (len > 0 && begin[len - 1] == '\r') --len;
    *line = std::string_view(begin, len);
    return true;
  }
  int64_t line() const { return line_; }
  size_t bytes_left() const { return text_.size() - pos_; }
  const char* who() const { return who_; }
  const std::string& path() const { return path_; }

  template <class... A>
  [[noreturn]] void fail(const A&... reason) const {
    fail_at(line_, reason...);
  }
  template <class... A>
  [[noreturn]] void fail_at(int64_t line, const A&... reason) const {
    TSR_FAIL(who_, ": ", path_, ": line ", line, ": ", reason...);
  }

 private:
  const char* who_;
  const std::string& path_;
  std::string_view text_;
  size_t pos_ = 0;
  int64_t line_ = 0;  // 1-based number of the line last returned by next()
};

// Whitespace-separated fields of one line.
class Fields {
 public:
  explicit Fields(std::string_view line) : rest_(line) {}
  // The next field, or an empty view when none is left.
  std::string_view next() {
    size_t i = 0;
    while (i < rest_.size() && is_blank(rest_[i])) ++i;
    size_t j = i;
    while (j < rest_.size() && !is_blank(rest_[j])) ++j;
    const std::string_view field = rest_.substr(i, j - i);
    rest_ = rest_.substr(j);
    return field;
  }

 private:
  std::string_view rest_;
};

// True for a line holding only blanks, or whose first non-blank character is one of comment.
bool skippable(std::string_view line, std::string_view comment_chars) {
  for (char c : line) {
    if (is_blank(c)) continue;
    return comment_chars.find(c) != std::string_view::npos;
  }
  return true;
}

enum class Parse { ok, not_a_number, out_of_range };

// Strips one leading '+' (std::from_chars does not accept it); "+-1" stays invalid.
std::string_view strip_plus(std::string_view s) {
  if (s.size() > 1 && s[0] == '+' && s[1] != '+' && s[1] != '-') return s.substr(1);
  return s;
}

Parse parse_int(std::string_view s, int64_t* out) {
  s = strip_plus(s);
  const char* end = s.data() + s.size();
  const auto [p, ec] = std::from_chars(s.data(), end, *out);
  if (ec == std::errc::result_out_of_range) return Parse::out_of_range;
  if (ec != std::errc() || p != end) return Parse::not_a_number;
  return Parse::ok;
}

// Parses a decimal real. Underflow rounds toward zero as strtod does; overflow is out_of_range.
// "nan" and "inf" parse; callers reject them.
template <class P>
Parse parse_real(std::string_view s, P* out) {
  s = strip_plus(s);
  const char* end = s.data() + s.size();
  const auto [p, ec] = std::from_chars(s.data(), end, *out, std::chars_format::general);
  if (p != end || ec == std::errc::invalid_argument) return Parse::not_a_number;
  if (ec == std::errc::result_out_of_range) {
    const std::string copy(s);
    const double d = std::strtod(copy.c_str(), nullptr);
    if (!(std::fabs(d) <= double(std::numeric_limits<P>::max()))) return Parse::out_of_range;
    *out = P(d);
  }
  return Parse::ok;
}

// Parses a finite real value field into V or fails at the source's current line.
template <class V>
V parse_value(const LineSource& src, std::string_view field) {
  ParseType<V> x{};
  switch (parse_real(field, &x)) {
    case Parse::not_a_number:
      src.fail("non-numeric value ", quoted(field));
    case Parse::out_of_range:
      src.fail("value ", quoted(field), " overflows ", value_name<V>());
    case Parse::ok:
      break;
  }
  if (!std::isfinite(x)) src.fail("value ", quoted(field), " is NaN or Inf (not finite)");
  const V v = from_float<V>(double(x));
  if (!is_finite(v)) src.fail("value ", quoted(field), " overflows ", value_name<V>());
  return v;
}

// Parses an integer-field value into V.
template <class V>
V parse_integer_value(const LineSource& src, std::string_view field) {
  int64_t x = 0;
  switch (parse_int(field, &x)) {
    case Parse::not_a_number:
      src.fail("value ", quoted(field), " is not an integer (the field is 'integer')");
    case Parse::out_of_range:
      src.fail("integer value ", quoted(field), " is out of the int64 range");
    case Parse::ok:
      break;
  }
  const V v = from_float<V>(double(x));
  if (!is_finite(v)) src.fail("value ", quoted(field), " overflows ", value_name<V>());
  return v;
}

// ---------------------------------------------------------------------------------------------
// Atomic file writing.

}  // namespace

std::string output_destination(const std::string& path, const char* who) {
  TSR_CHECK(!path.empty(), who, ": the output path is empty");
  // /dev/stdout, /dev/fd/N and /proc/self/fd/N name an open descriptor (a shell redirection, a
  // pipe): writing a new file in their place would unlink what the shell opened.
  const auto names_a_descriptor = [](const std::string& p) {
    return p.rfind("/dev/fd/", 0) == 0 || p.rfind("/proc/", 0) == 0 || p == "/dev/stdout" ||
           p == "/dev/stderr" || p == "/dev/stdin";
  };
  std::filesystem::path dest = path;
  struct stat st {};
  for (int hops = 0; ::lstat(dest.c_str(), &st) == 0 && S_ISLNK(st.st_mode); ++hops) {
    TSR_CHECK(!names_a_descriptor(dest.string()), who, ": ", path,
              " names an open file descriptor; give the output a file name");
    // A symbolic link: write its target (created if the link dangles), keep the link.
    TSR_CHECK(hops < 40, who, ": ", path, ": too many levels of symbolic links");
    std::error_code ec;
    const std::filesystem::path target = std::filesystem::read_symlink(dest, ec);
    TSR_CHECK(!ec, who, ": cannot read the symbolic link ", dest.string(), ": ", ec.message());
    dest = target.is_absolute() ? target : dest.parent_path() / target;
  }
  if (::stat(dest.c_str(), &st) == 0) {
    TSR_CHECK(S_ISREG(st.st_mode), who, ": ", path, " is ", file_kind(st.st_mode),
              "; refusing to replace it with a file");
  } else {
    TSR_CHECK(errno == ENOENT, who, ": cannot write ", path, ": ", errno_text());
  }
  const std::string dir = dest.parent_path().empty() ? "." : dest.parent_path().string();
  TSR_CHECK(::access(dir.c_str(), W_OK | X_OK) == 0, who, ": cannot write ", path, " (directory ",
            dir, "): ", errno_text());
  return dest.string();
}

namespace {

// Buffers output into a temp file beside path; commit() renames it to path. Destroying an
// uncommitted writer removes the temp file, so a failed write leaves no file behind.
class AtomicFile {
 public:
  AtomicFile(const std::string& path, const char* who)
      : path_(output_destination(path, who)), who_(who) {
    static std::atomic<uint64_t> counter{0};
    tmp_ = path_ + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
    file_ = std::fopen(tmp_.c_str(), "wb");
    TSR_CHECK(file_ != nullptr, who, ": cannot open ", path, " for writing (temp file ", tmp_,
              "): ", errno_text());
    struct stat st {};  // a replaced file keeps its permission bits
    if (::stat(path_.c_str(), &st) == 0) ::fchmod(::fileno(file_), st.st_mode & 07777);
    buf_.reserve(kFlushBytes + 256);
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile() {
    if (file_) std::fclose(file_);
    if (!committed_) std::remove(tmp_.c_str());
  }

  void append(std::string_view s) {
    buf_.append(s.data(), s.size());
    if (buf_.size() >= kFlushBytes) flush();
  }
  void append_bytes(const void* data, size_t n) {
    if (n >= kFlushBytes) {
      flush();
      write_raw(data, n);
    } else {
      append(std::string_view(static_cast<const char*>(data), n));
    }
  }
  template <class T>
  void append_number(T x) {
    char tmp[64];
    const auto r = std::to_chars(tmp, tmp + sizeof tmp, x);
    buf_.append(tmp, size_t(r.ptr - tmp));
  }
  void append_char(char c) {
    buf_.push_back(c);
    if (buf_.size() >= kFlushBytes) flush();
  }

  void commit() {
    flush();
    FILE* f = file_;
    file_ = nullptr;
    TSR_CHECK(std::fclose(f) == 0, who_, ": error writing ", path_, ": ", errno_text());
    TSR_CHECK(std::rename(tmp_.c_str(), path_.c_str()) == 0, who_, ": cannot rename ", tmp_, " to ",
              path_, ": ", errno_text());
    committed_ = true;
  }

 private:
  static constexpr size_t kFlushBytes = size_t(1) << 20;
  void flush() {
    write_raw(buf_.data(), buf_.size());
    buf_.clear();
  }
  void write_raw(const void* data, size_t n) {
    TSR_CHECK(std::fwrite(data, 1, n, file_) == n, who_, ": error writing ", path_, ": ",
              errno_text());
  }

  std::string path_;
  const char* who_;
  std::string tmp_;
  FILE* file_ = nullptr;
  std::string buf_;
  bool committed_ = false;
};

// ---------------------------------------------------------------------------------------------
// Matrix Market.

struct MmBanner {
  std::string field;     // real | integer | pattern
  std::string symmetry;  // general | symmetric
};

MmBanner parse_mm_banner(const LineSource& src, std::string_view line) {
  static constexpr const char* kExpected =
      "expected '%%MatrixMarket matrix coordinate <real|integer|pattern> <general|symmetric>'";
  Fields f(line);
  const std::string tag = lower(f.next());
  if (tag != "%%matrixmarket") src.fail("missing or bad banner: ", kExpected);
  const std::string object = lower(f.next());
  const std::string format = lower(f.next());
  MmBanner b{lower(f.next()), lower(f.next())};
  if (object.empty() || format.empty() || b.field.empty() || b.symmetry.empty()) {
    src.fail("incomplete banner: ", kExpected);
  }
  if (object != "matrix") src.fail("unsupported object '", object, "' in banner: ", kExpected);
  if (format == "array") {
    src.fail("'array' (dense) Matrix Market files are not supported; only 'coordinate'");
  }
  if (format != "coordinate") src.fail("unknown format '", format, "' in banner: ", kExpected);
  if (b.field == "complex") src.fail("'complex' Matrix Market files are not supported");
  if (b.field != "real" && b.field != "integer" && b.field != "pattern") {
    src.fail("unknown field '", b.field, "' in banner: ", kExpected);
  }
  if (b.symmetry == "hermitian" || b.symmetry == "skew-symmetric") {
    src.fail("'", b.symmetry, "' Matrix Market files are not supported (only general/symmetric)");
  }
  if (b.symmetry != "general" && b.symmetry != "symmetric") {
    src.fail("unknown symmetry '", b.symmetry, "' in banner: ", kExpected);
  }
  const std::string_view extra = f.next();
  if (!extra.empty()) src.fail("trailing text ", quoted(extra), " after the banner");
  return b;
}

int64_t parse_size_field(const LineSource& src, std::string_view field, const char* name) {
  if (field.empty()) src.fail("bad size line: missing ", name, "; expected 'rows cols nnz'");
  int64_t x = 0;
  switch (parse_int(field, &x)) {
    case Parse::not_a_number:
      src.fail("bad size line: non-numeric ", name, " ", quoted(field));
    case Parse::out_of_range:
      src.fail("bad size line: ", name, " ", quoted(field),
               " is out of range (does not fit in int64 indices)");
    case Parse::ok:
      break;
  }
  if (x < 0) src.fail("bad size line: negative size ", name, " = ", x);
  return x;
}

// Parses a 1-based index field and returns it 0-based; extent is the dimension's size.
int64_t parse_mm_index(const LineSource& src, std::string_view field, const char* name,
                       int64_t extent) {
  if (field.empty()) src.fail("missing ", name, " index");
  int64_t x = 0;
  switch (parse_int(field, &x)) {
    case Parse::not_a_number:
      src.fail("non-numeric ", name, " index ", quoted(field));
    case Parse::out_of_range:
      src.fail(name, " index ", quoted(field), " is past the size: ", extent, " ", name, "s");
    case Parse::ok:
      break;
  }
  if (x < 0) src.fail("negative ", name, " index ", x);
  if (x == 0) src.fail(name, " index 0: Matrix Market indices are 1-based");
  if (x > extent) src.fail(name, " index ", x, " is past the size: ", extent, " ", name, "s");
  return x - 1;
}

template <class I>
void check_fits(const LineSource& src, int64_t line, int64_t n, const char* what) {
  if (!fits_index<I>(n)) {
    src.fail_at(line, what, " = ", n, " does not fit in ", index_name<I>(),
                " indices; read with int64 indices (I = int64_t)");
  }
}

// A symmetric file with entries on both sides of the diagonal must not hold both (i, j) and (j, i):
// mirroring would add each onto the other. The side with fewer entries goes into a hash set (a file
// with a stray entry or two above the diagonal costs almost nothing); the other side is looked up.
// Entries are numbered 1.. in file order.
template <class I>
void check_no_mirrored_pairs(const LineSource& src, const Buffer<I>& row, const Buffer<I>& col,
                             int64_t count) {
  int64_t below = 0, above = 0;
  for (int64_t e = 0; e < count; ++e) below += row[e] > col[e], above += row[e] < col[e];
  const bool index_below = below <= above;  // the side put in the set
  struct PairHash {
    size_t operator()(const std::pair<uint64_t, uint64_t>& p) const {
      return std::hash<uint64_t>()(p.first * 0x9E3779B97F4A7C15ull ^ p.second);
    }
  };
  std::unordered_map<std::pair<uint64_t, uint64_t>, int64_t, PairHash> side;  // {min, max} -> entry
  side.reserve(size_t(std::min(below, above)));
  for (int64_t e = 0; e < count; ++e) {
    if (row[e] != col[e] && (row[e] > col[e]) == index_below) {
      const uint64_t i = uint64_t(row[e]), j = uint64_t(col[e]);
      side.emplace(std::make_pair(std::min(i, j), std::max(i, j)), e);
    }
  }
  for (int64_t e = 0; e < count; ++e) {
    if (row[e] == col[e] || (row[e] > col[e]) == index_below) continue;
    const uint64_t i = uint64_t(row[e]), j = uint64_t(col[e]);
    const auto it = side.find(std::make_pair(std::min(i, j), std::max(i, j)));
    if (it == side.end()) continue;
    const int64_t first = std::min(it->second, e), second = std::max(it->second, e);
    TSR_FAIL(src.who(), ": ", src.path(), ": entries ", first + 1, " (", row[first] + 1, ", ",
             col[first] + 1, ") and ", second + 1, " (", row[second] + 1, ", ", col[second] + 1,
             ") mirror each other; a symmetric file stores each off-diagonal pair once");
  }
}

// The Matrix Market file `path` whose bytes are `text` (read once by the caller).
template <class V, class I>
Coo<V, I> parse_matrix_market(const std::string& path, const std::string& text,
                              MatrixMarketHeader* header) {
  LineSource src("read_matrix_market", path, text);
  std::string_view line;

  if (!src.next(&line)) src.fail_at(1, "empty file: missing the '%%MatrixMarket' banner");
  const MmBanner banner = parse_mm_banner(src, line);
  const bool pattern = banner.field == "pattern";
  const bool integer = banner.field == "integer";
  const bool symmetric = banner.symmetry == "symmetric";

  // Size line: the first line that is neither blank nor a '%' comment.
  bool have_size = false;
  while (src.next(&line)) {
    if (!skippable(line, "%")) {
      have_size = true;
      break;
    }
  }
  if (!have_size) src.fail_at(src.line() + 1, "unexpected end of file: missing the size line");
  const int64_t size_line = src.line();
  Fields sf(line);
  const int64_t rows = parse_size_field(src, sf.next(), "rows");
  const int64_t cols = parse_size_field(src, sf.next(), "cols");
  const int64_t nnz = parse_size_field(src, sf.next(), "nnz");
  const std::string_view extra = sf.next();
  if (!extra.empty()) src.fail("bad size line: trailing text ", quoted(extra));
  check_fits<I>(src, size_line, rows, "rows");
  check_fits<I>(src, size_line, cols, "cols");
  check_fits<I>(src, size_line, nnz, "nnz");
  if (symmetric && rows != cols) {
    src.fail("a symmetric matrix must be square; the size line gives ", rows, " x ", cols);
  }

  // An entry line takes at least 4 bytes ("1 1\n"; 3 for the last), so a declared count above
  // that bound means a truncated file: storage is capped and the loop below reports it.
  const int64_t max_lines = int64_t((src.bytes_left() + 1) / 4);
  const size_t cap = size_t(std::min(nnz, max_lines));
  Buffer<I> row(cap), col(cap);
  Buffer<V> val(cap);
  int64_t count = 0;     // entries read
  int64_t off_diag = 0;  // entries with row != col
  bool below = false, above = false;  // symmetric: off-diagonal entries on each side
  while (src.next(&line)) {
    if (skippable(line, "%")) continue;
    if (count == nnz) {
      src.fail("too many entries: the size line (line ", size_line, ") declares ", nnz);
    }
    Fields f(line);
    const int64_t r = parse_mm_index(src, f.next(), "row", rows);
    const int64_t c = parse_mm_index(src, f.next(), "column", cols);
    V v = from_float<V>(1.0);
    if (!pattern) {
      const std::string_view field = f.next();
      if (field.empty()) src.fail("missing value field (the field is '", banner.field, "')");
      v = integer ? parse_integer_value<V>(src, field) : parse_value<V>(src, field);
    }
    const std::string_view trailing = f.next();
    if (!trailing.empty()) src.fail("trailing text ", quoted(trailing), " after the entry");
    below |= r > c;
    above |= r < c;
    row[count] = I(r);
    col[count] = I(c);
    val[count] = v;
    off_diag += r != c;
    ++count;
  }
  if (count < nnz) {
    src.fail_at(src.line() + 1, "unexpected end of file after ", count, " of ", nnz,
                " entries (truncated file)");
  }

  if (symmetric && below && above) check_no_mirrored_pairs(src, row, col, count);

  Coo<V, I> out;
  out.rows = rows;
  out.cols = cols;
  if (symmetric && off_diag > 0) {
    const int64_t expanded = nnz + off_diag;
    if (!fits_index<I>(expanded)) {
      src.fail_at(size_line, "symmetric expansion gives nnz = ", expanded,
                  ", which does not fit in ", index_name<I>(),
                  " indices; read with int64 indices (I = int64_t)");
    }
    out.row = Buffer<I>(size_t(expanded));
    out.col = Buffer<I>(size_t(expanded));
    out.values = Buffer<V>(size_t(expanded));
    size_t k = 0;
    for (size_t e = 0; e < size_t(nnz); ++e) {  // each entry is followed by its mirror
      out.row[k] = row[e];
      out.col[k] = col[e];
      out.values[k++] = val[e];
      if (row[e] != col[e]) {
        out.row[k] = col[e];
        out.col[k] = row[e];
        out.values[k++] = val[e];
      }
    }
  } else {
    out.row = std::move(row);
    out.col = std::move(col);
    out.values = std::move(val);
  }
  if (header) *header = {banner.field, banner.symmetry};
  return out;
}

}  // namespace

template <class V, class I>
Coo<V, I> read_matrix_market(const std::string& path, MatrixMarketHeader* header) {
  return parse_matrix_market<V, I>(path, read_whole_file(path, "read_matrix_market"), header);
}

template <class V, class I>
void write_matrix_market(const std::string& path, const Csr<V, I>& m) {
  constexpr const char* kWho = "write_matrix_market";
  TSR_CHECK(m.indptr.on_host() && m.indices.on_host() && m.values.on_host(), kWho, ": ", path,
            ": the matrix must be in host memory");
  TSR_CHECK(m.rows >= 0 && m.cols >= 0, kWho, ": ", path, ": negative shape ", m.rows, " x ",
            m.cols);
  TSR_CHECK(int64_t(m.indptr.size()) == m.rows + 1, kWho, ": ", path, ": indptr has ",
            m.indptr.size(), " entries, expected rows + 1 = ", m.rows + 1);
  TSR_CHECK(m.indices.size() == m.values.size(), kWho, ": ", path, ": ", m.indices.size(),
            " indices but ", m.values.size(), " values");
  const int64_t nnz = m.nnz();
  TSR_CHECK(int64_t(m.indptr[0]) == 0 && int64_t(m.indptr[m.rows]) == nnz, kWho, ": ", path,
            ": indptr must run from 0 to nnz = ", nnz);

  AtomicFile out(path, kWho);
  out.append("%%MatrixMarket matrix coordinate real general\n");
  out.append_number(m.rows);
  out.append_char(' ');
  out.append_number(m.cols);
  out.append_char(' ');
  out.append_number(nnz);
  out.append_char('\n');
  for (int64_t r = 0; r < m.rows; ++r) {
    const int64_t begin = m.indptr[r], end = m.indptr[r + 1];
    TSR_CHECK(begin <= end && end <= nnz, kWho, ": ", path, ": indptr[", r + 1, "] = ", end,
              " is outside [indptr[", r, "] = ", begin, ", nnz = ", nnz, "]");
    for (int64_t e = begin; e < end; ++e) {
      const int64_t c = m.indices[e];
      TSR_CHECK(c >= 0 && c < m.cols, kWho, ": ", path, ": column index ", c, " of row ", r,
                " is outside [0, ", m.cols, ")");
      TSR_CHECK(is_finite(m.values[e]), kWho, ": ", path, ": value at (", r, ", ", c,
                ") is NaN or Inf; Matrix Market files hold finite values only");
      out.append_number(r + 1);
      out.append_char(' ');
      out.append_number(c + 1);
      out.append_char(' ');
      // Shortest decimal that round-trips the value in its own type (float for bf16/f16).
      out.append_number(to_float(m.values[e]));
      out.append_char('\n');
    }
  }
  out.commit();
}

namespace {

template <class I>
void check_edge_list_options(const std::string& path, const EdgeListOptions& options) {
  TSR_CHECK(options.num_nodes >= -1, "read_edge_list: ", path, ": num_nodes = ", options.num_nodes,
            " (expected -1 or a node count)");
  TSR_CHECK(options.num_nodes < 0 || fits_index<I>(options.num_nodes), "read_edge_list: ", path,
            ": num_nodes = ", options.num_nodes, " does not fit in ", index_name<I>(),
            " indices; read with int64 indices (I = int64_t)");
}

// The edge list `path` whose bytes are `text` (read once by the caller; options checked).
template <class V, class I>
Coo<V, I> parse_edge_list(const std::string& path, const std::string& text,
                          const EdgeListOptions& options) {
  constexpr const char* kWho = "read_edge_list";
  LineSource src(kWho, path, text);
  const bool fixed_n = options.num_nodes >= 0;

  std::vector<I> us, vs;
  std::vector<V> ws;
  const size_t lines = size_t(std::count(text.begin(), text.end(), '\n')) + 1;
  us.reserve(lines);
  vs.reserve(lines);
  ws.reserve(lines);
  std::unordered_map<int64_t, int64_t> ids;  // compact_ids: file id -> dense id (first seen)
  int64_t max_id = -1;
  int64_t off_diag = 0;

  // Maps a file id to its matrix index, checking it against num_nodes and I.
  auto node = [&](std::string_view field, const char* name) -> I {
    int64_t x = 0;
    switch (parse_int(field, &x)) {
      case Parse::not_a_number:
        src.fail("non-numeric ", name, " id ", quoted(field),
                 " (ids must be non-negative integers)");
      case Parse::out_of_range:
        src.fail(name, " id ", quoted(field), " is out of the int64 range");
      case Parse::ok:
        break;
    }
    if (x < 0) src.fail("negative ", name, " id ", x, " (ids must be non-negative integers)");
    if (options.compact_ids) {
      const auto [it, inserted] = ids.emplace(x, int64_t(ids.size()));
      if (inserted && fixed_n && it->second >= options.num_nodes) {
        src.fail("more than num_nodes = ", options.num_nodes, " distinct ids (id ", x, ")");
      }
      if (inserted && !fits_index<I>(it->second + 1)) {
        src.fail("more distinct ids than ", index_name<I>(),
                 " indices hold; read with int64 indices (I = int64_t)");
      }
      x = it->second;
    } else if (fixed_n && x >= options.num_nodes) {
      src.fail(name, " id ", x, " is out of range: num_nodes = ", options.num_nodes);
    } else if (!fits_index<I>(x + 1)) {
      src.fail(name, " id ", x, " does not fit in ", index_name<I>(),
               " indices; read with int64 indices (I = int64_t)");
    }
    max_id = std::max(max_id, x);
    return I(x);
  };

  std::string_view line;
  while (src.next(&line)) {
    if (skippable(line, "#%")) continue;
    Fields f(line);
    const std::string_view fu = f.next(), fv = f.next(), fw = f.next(), extra = f.next();
    if (fv.empty()) src.fail("expected 'u v' or 'u v w', found one column");
    if (!extra.empty()) src.fail("expected 2 or 3 columns ('u v' or 'u v w'), found more");
    const I u = node(fu, "source");
    const I v = node(fv, "target");
    us.push_back(u);
    vs.push_back(v);
    ws.push_back(fw.empty() ? from_float<V>(1.0) : parse_value<V>(src, fw));
    off_diag += u != v;
  }

  const int64_t n = fixed_n               ? options.num_nodes
                    : options.compact_ids ? int64_t(ids.size())
                                          : max_id + 1;
  const int64_t m = int64_t(us.size());
  const int64_t nnz = options.symmetrize ? m + off_diag : m;
  TSR_CHECK(fits_index<I>(nnz), kWho, ": ", path, ": ", nnz, " entries do not fit in ",
            index_name<I>(), " indices; read with int64 indices (I = int64_t)");
  Coo<V, I> out{n, n, Buffer<I>(size_t(nnz)), Buffer<I>(size_t(nnz)), Buffer<V>(size_t(nnz))};
  size_t k = 0;
  for (size_t e = 0; e < us.size(); ++e) {  // each edge is followed by its mirror if symmetrizing
    out.row[k] = us[e];
    out.col[k] = vs[e];
    out.values[k++] = ws[e];
    if (options.symmetrize && us[e] != vs[e]) {
      out.row[k] = vs[e];
      out.col[k] = us[e];
      out.values[k++] = ws[e];
    }
  }
  return out;
}

bool ends_with_mtx(const std::string& path) {
  if (path.size() < 4) return false;
  std::string tail = lower(std::string_view(path).substr(path.size() - 4));
  return tail == ".mtx";
}

}  // namespace

template <class V, class I>
Coo<V, I> read_edge_list(const std::string& path, const EdgeListOptions& options) {
  check_edge_list_options<I>(path, options);
  return parse_edge_list<V, I>(path, read_whole_file(path, "read_edge_list"), options);
}

template <class V, class I>
Coo<V, I> read_sparse_file(const std::string& path) {
  // Read once: the bytes of a pipe cannot be read a second time by the parser.
  const std::string text = read_whole_file(path, "read_sparse_file");
  if (ends_with_mtx(path) || lower(std::string_view(text).substr(0, 14)) == "%%matrixmarket") {
    return parse_matrix_market<V, I>(path, text, nullptr);
  }
  return parse_edge_list<V, I>(path, text, {});
}

// ---------------------------------------------------------------------------------------------
// .npy

namespace {

enum class NpyType { f4, f8, f2, i4, i8, u1 };

size_t npy_itemsize(NpyType t) {
  switch (t) {
    case NpyType::f4:
    case NpyType::i4:
      return 4;
    case NpyType::f8:
    case NpyType::i8:
      return 8;
    case NpyType::f2:
      return 2;
    case NpyType::u1:
      return 1;
  }
  return 0;
}

bool npy_is_float(NpyType t) { return t == NpyType::f4 || t == NpyType::f8 || t == NpyType::f2; }

// The on-disk type write_npy uses for T (bf16 has none and is widened to f4).
template <class T>
constexpr NpyType npy_type_of() {
  if constexpr (std::is_same_v<T, double>)
    return NpyType::f8;
  else if constexpr (std::is_same_v<T, f16>)
    return NpyType::f2;
  else if constexpr (std::is_same_v<T, int32_t>)
    return NpyType::i4;
  else if constexpr (std::is_same_v<T, int64_t>)
    return NpyType::i8;
  else
    return NpyType::f4;  // float, bf16
}

const char* npy_descr(NpyType t) {
  switch (t) {
    case NpyType::f4:
      return "<f4";
    case NpyType::f8:
      return "<f8";
    case NpyType::f2:
      return "<f2";
    case NpyType::i4:
      return "<i4";
    case NpyType::i8:
      return "<i8";
    case NpyType::u1:
      return "|u1";
  }
  return "?";
}

struct NpyHeader {
  NpyType type = NpyType::f4;
  bool fortran_order = false;
  std::vector<int64_t> shape;
  size_t data_offset = 0;  // bytes before the array data
};

// Parses the Python-literal header dict, e.g.
// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
// Errors report the byte offset in the file: "read_npy: path: byte N: reason".
class NpyDictParser {
 public:
  NpyDictParser(const std::string& path, std::string_view text, size_t base)
      : path_(path), text_(text), base_(base) {}

  NpyHeader parse() {
    NpyHeader h;
    bool have_descr = false, have_order = false, have_shape = false;
    skip_space();
    expect('{');
    for (;;) {
      skip_space();
      if (peek() == '}') {
        ++pos_;
        break;
      }
      const size_t key_pos = pos_;
      const std::string key = parse_string();
      skip_space();
      expect(':');
      skip_space();
      if (key == "descr") {
        h.type = parse_descr();
        have_descr = true;
      } else if (key == "fortran_order") {
        h.fortran_order = parse_bool();
        have_order = true;
      } else if (key == "shape") {
        h.shape = parse_shape();
        have_shape = true;
      } else {
        fail(key_pos, "unexpected header key '", key, "'");
      }
      skip_space();
      if (peek() == ',') {
        ++pos_;
      } else if (peek() != '}') {
        fail(pos_, "expected ',' or '}' in the header dict");
      }
    }
    skip_space();
    if (pos_ != text_.size()) fail(pos_, "unexpected text after the header dict");
    if (!have_descr || !have_order || !have_shape) {
      fail(0, "header dict lacks ",
           !have_descr   ? "'descr'"
           : !have_order ? "'fortran_order'"
                         : "'shape'");
    }
    return h;
  }

 private:
  template <class... A>
  [[noreturn]] void fail(size_t pos, const A&... reason) const {
    TSR_FAIL("read_npy: ", path_, ": byte ", base_ + pos, ": ", reason...);
  }
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  void skip_space() {
    while (pos_ < text_.size() && (is_blank(text_[pos_]) || text_[pos_] == '\n')) ++pos_;
  }
  void expect(char c) {
    if (peek() != c) fail(pos_, "expected '", c, "' in the header dict");
    ++pos_;
  }
  std::string parse_string() {
    const char q = peek();
    if (q != '\'' && q != '"') fail(pos_, "expected a quoted string in the header dict");
    const size_t end = text_.find(q, pos_ + 1);
    if (end == std::string_view::npos) fail(pos_, "unterminated string in the header dict");
    std::string s(text_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    return s;
  }
  bool parse_bool() {
    if (text_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (text_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    fail(pos_, "'fortran_order' must be True or False");
  }
  NpyType parse_descr() {
    const size_t at = pos_;
    if (peek() == '[') fail(at, "structured dtypes are not supported");
    const std::string d = parse_string();
    static constexpr const char* kSupported = " (supported: <f4 <f8 <f2 <i4 <i8 |u1)";
    if (d.size() < 3) fail(at, "unsupported dtype '", d, "'", kSupported);
    const char order = d[0];
    const std::string kind = d.substr(1);
    if (kind == "u1" && (order == '|' || order == '<' || order == '>' || order == '=')) {
      return NpyType::u1;
    }
    if (order == '>') fail(at, "big-endian data ('", d, "') is not supported; use '<' order");
    if (order != '<' && order != '=') fail(at, "unsupported dtype '", d, "'", kSupported);
    if (kind == "f4") return NpyType::f4;
    if (kind == "f8") return NpyType::f8;
    if (kind == "f2") return NpyType::f2;
    if (kind == "i4") return NpyType::i4;
    if (kind == "i8") return NpyType::i8;
    fail(at, "unsupported dtype '", d, "'", kSupported);
  }
  std::vector<int64_t> parse_shape() {
    expect('(');
    std::vector<int64_t> shape;
    for (;;) {
      skip_space();
      if (peek() == ')') {
        ++pos_;
        return shape;
      }
      const size_t at = pos_;
      size_t end = pos_;
      while (end < text_.size() && text_[end] >= '0' && text_[end] <= '9') ++end;
      int64_t dim = 0;
      if (end == at || parse_int(text_.substr(at, end - at), &dim) != Parse::ok) {
        fail(at, "bad dimension in 'shape' (expected a non-negative integer)");
      }
      pos_ = end;
      if (peek() == 'L') ++pos_;  // Python 2 long suffix
      shape.push_back(dim);
      skip_space();
      if (peek() == ',') {
        ++pos_;
      } else if (peek() != ')') {
        fail(pos_, "expected ',' or ')' in 'shape'");
      }
    }
  }

  const std::string& path_;
  std::string_view text_;
  size_t base_;  // file offset of text_[0]
  size_t pos_ = 0;
};

uint64_t file_size_of(FILE* f) {
  const long here = std::ftell(f);
  std::fseek(f, 0, SEEK_END);
  const long size = std::ftell(f);
  std::fseek(f, here, SEEK_SET);
  return size < 0 ? 0 : uint64_t(size);
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    s += std::to_string(shape[i]);
    if (i + 1 < shape.size() || shape.size() == 1) s += ",";
    if (i + 1 < shape.size()) s += " ";
  }
  return s + ")";
}

template <class S>
S load_as(const unsigned char* p) {
  S x;
  std::memcpy(&x, p, sizeof x);
  return x;
}

// Converts n on-disk elements of type t to T. Integer T takes integer data only (range-checked).
template <class T>
void convert_npy(const std::string& path, const unsigned char* src, NpyType t, size_t n, T* dst) {
  const size_t w = npy_itemsize(t);
  if constexpr (std::is_integral_v<T>) {
    TSR_CHECK(!npy_is_float(t), "read_npy: ", path, ": refusing to convert floating-point data (",
              npy_descr(t), ") to ", value_name<T>());
    for (size_t i = 0; i < n; ++i) {
      const unsigned char* p = src + i * w;
      const int64_t x = t == NpyType::i4   ? load_as<int32_t>(p)
                        : t == NpyType::i8 ? load_as<int64_t>(p)
                                           : int64_t(*p);
      TSR_CHECK(x >= int64_t(std::numeric_limits<T>::min()) &&
                    x <= int64_t(std::numeric_limits<T>::max()),
                "read_npy: ", path, ": element ", i, " = ", x, " overflows ", value_name<T>());
      dst[i] = T(x);
    }
  } else {
    for (size_t i = 0; i < n; ++i) {
      const unsigned char* p = src + i * w;
      double x = 0;
      switch (t) {
        case NpyType::f4:
          x = load_as<float>(p);
          break;
        case NpyType::f8:
          x = load_as<double>(p);
          break;
        case NpyType::f2: {
          f16 h;
          h.bits = load_as<uint16_t>(p);
          x = float(h);
          break;
        }
        case NpyType::i4:
          x = double(load_as<int32_t>(p));
          break;
        case NpyType::i8:
          x = double(load_as<int64_t>(p));
          break;
        case NpyType::u1:
          x = double(*p);
          break;
      }
      dst[i] = from_float<T>(x);
      TSR_CHECK(!std::isfinite(x) || std::isfinite(double(to_float(dst[i]))), "read_npy: ", path,
                ": element ", i, " = ", x, " overflows ", value_name<T>());
    }
  }
}

}  // namespace

template <class T>
DenseMatrix<T> read_npy(const std::string& path) {
  constexpr const char* kWho = "read_npy";
  FilePtr f = open_for_reading(path, kWho);
  struct stat st {};
  TSR_CHECK(::fstat(::fileno(f.get()), &st) == 0 && S_ISREG(st.st_mode), kWho, ": ", path,
            " is a pipe; .npy files are read from regular files (their size is checked first)");
  const uint64_t file_size = file_size_of(f.get());
  unsigned char prelude[12] = {};
  const size_t got = std::fread(prelude, 1, sizeof prelude, f.get());
  static constexpr unsigned char kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  TSR_CHECK(got >= 10 && std::memcmp(prelude, kMagic, 6) == 0, kWho, ": ", path,
            ": byte 0: bad magic: not a .npy file (expected \\x93NUMPY)");
  const int major = prelude[6], minor = prelude[7];
  TSR_CHECK(major >= 1 && major <= 3, kWho, ": ", path,
            ": byte 6: unsupported .npy format version ", major, ".", minor,
            " (supported: 1.0, 2.0, 3.0)");
  size_t prefix = 10;
  uint64_t header_len = uint64_t(prelude[8]) | uint64_t(prelude[9]) << 8;
  if (major >= 2) {
    TSR_CHECK(got >= 12, kWho, ": ", path, ": byte 8: truncated header");
    prefix = 12;
    header_len |= uint64_t(prelude[10]) << 16 | uint64_t(prelude[11]) << 24;
  }
  TSR_CHECK(prefix + header_len <= file_size, kWho, ": ", path, ": byte ", prefix,
            ": truncated header: it declares ", header_len, " bytes but the file has ",
            file_size - std::min<uint64_t>(file_size, prefix));
  std::string dict(header_len, '\0');
  TSR_CHECK(std::fseek(f.get(), long(prefix), SEEK_SET) == 0 &&
                std::fread(dict.data(), 1, header_len, f.get()) == header_len,
            kWho, ": ", path, ": byte ", prefix, ": cannot read the header: ", errno_text());
  NpyHeader h = NpyDictParser(path, dict, prefix).parse();
  h.data_offset = prefix + header_len;

  TSR_CHECK(!h.fortran_order, kWho, ": ", path,
            ": Fortran-order arrays are not supported; save a C-order array "
            "(np.ascontiguousarray)");
  TSR_CHECK(h.shape.size() == 1 || h.shape.size() == 2, kWho, ": ", path, ": ", h.shape.size(),
            "-D array of shape ", shape_text(h.shape), " is not supported (1-D or 2-D only)");
  const int64_t rows = h.shape[0];
  const int64_t cols = h.shape.size() == 2 ? h.shape[1] : 1;
  const size_t w = npy_itemsize(h.type);
  uint64_t count = 0, bytes = 0;
  TSR_CHECK(!__builtin_mul_overflow(uint64_t(rows), uint64_t(cols), &count) &&
                !__builtin_mul_overflow(count, uint64_t(w), &bytes),
            kWho, ": ", path, ": shape ", shape_text(h.shape), " is too large");
  TSR_CHECK(h.data_offset + bytes <= file_size, kWho, ": ", path, ": truncated: shape ",
            shape_text(h.shape), " of ", npy_descr(h.type), " needs ", bytes,
            " data bytes from byte ", h.data_offset, " but the file has ",
            file_size - std::min<uint64_t>(file_size, h.data_offset));

  TSR_CHECK(h.data_offset + bytes == file_size, kWho, ": ", path, ": ",
            file_size - h.data_offset - bytes, " bytes past the end of the data (shape ",
            shape_text(h.shape), " of ", npy_descr(h.type), " ends at byte ", h.data_offset + bytes,
            "): not a single array");
  DenseMatrix<T> out(rows, cols);
  auto read_bytes = [&](void* dst) {
    TSR_CHECK(std::fread(dst, 1, bytes, f.get()) == bytes, kWho, ": ", path,
              ": truncated: cannot read ", bytes, " data bytes from byte ", h.data_offset);
  };
  if (bytes == 0) return out;
  if (h.type == npy_type_of<T>() && !std::is_same_v<T, bf16>) {
    read_bytes(out.data());
  } else {
    std::vector<unsigned char> raw(bytes);
    read_bytes(raw.data());
    convert_npy(path, raw.data(), h.type, size_t(count), out.data());
  }
  return out;
}

template <class T>
void write_npy(const std::string& path, const DenseView<const T>& m) {
  constexpr const char* kWho = "write_npy";
  validate_dense(m, kWho);
  TSR_CHECK(m.space == MemorySpace::host, kWho, ": ", path, ": the array must be in host memory");
  constexpr NpyType type = npy_type_of<T>();
  std::string dict = std::string("{'descr': '") + npy_descr(type) +
                     "', 'fortran_order': False, 'shape': (" + std::to_string(m.rows) + ", " +
                     std::to_string(m.cols) + "), }";
  // Pad with spaces and a final '\n' so the data starts on a 64-byte boundary.
  size_t prefix = 10;
  if (dict.size() + 1 + prefix > 65535) prefix = 12;  // format 2.0: 4-byte header length
  const size_t total = (prefix + dict.size() + 1 + 63) / 64 * 64;
  dict.append(total - prefix - dict.size() - 1, ' ');
  dict.push_back('\n');
  const size_t header_len = dict.size();

  AtomicFile out(path, kWho);
  unsigned char pre[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', uint8_t(prefix == 10 ? 1 : 2), 0};
  for (size_t b = 0; b < prefix - 8; ++b) pre[8 + b] = uint8_t(header_len >> (8 * b));
  out.append_bytes(pre, prefix);
  out.append(dict);
  std::vector<float> widened;  // bf16 rows, widened to f4
  for (int64_t r = 0; r < m.rows; ++r) {
    const T* row = m.row(r);
    if constexpr (std::is_same_v<T, bf16>) {
      widened.resize(size_t(m.cols));
      for (int64_t c = 0; c < m.cols; ++c) widened[size_t(c)] = to_float(row[c]);
      out.append_bytes(widened.data(), widened.size() * sizeof(float));
    } else {
      out.append_bytes(row, size_t(m.cols) * sizeof(T));
    }
  }
  out.commit();
}

// ---------------------------------------------------------------------------------------------
// .fvecs / .ivecs

template <class T>
DenseMatrix<T> read_vecs(const std::string& path) {
  static_assert(sizeof(T) == 4, ".fvecs/.ivecs hold 4-byte values");
  const char* who = std::is_same_v<T, float> ? "read_fvecs" : "read_ivecs";
  const std::string bytes = read_whole_file(path, who);
  int32_t dim = 0;
  TSR_CHECK(bytes.size() >= 4, who, ": ", path, ": ", bytes.empty() ? "empty file" : "truncated first record",
            " (", bytes.size(), " bytes)");
  std::memcpy(&dim, bytes.data(), 4);
  TSR_CHECK(dim > 0, who, ": ", path, ": record 0 (byte 0): dimension ", dim, " is not positive");
  const size_t record = 4 + size_t(dim) * 4;
  const size_t records = bytes.size() / record;
  // Each record's own dimension first, so a differing one is named rather than a truncation.
  for (size_t r = 0; r < records; ++r) {
    int32_t d = 0;
    std::memcpy(&d, bytes.data() + r * record, 4);
    TSR_CHECK(d == dim, who, ": ", path, ": record ", r, " (byte ", r * record, ") has dimension ", d,
              " but record 0 has ", dim);
  }
  TSR_CHECK(bytes.size() % record == 0, who, ": ", path, ": record ", records, " (byte ", records * record,
            ") is truncated: ", bytes.size() - records * record, " bytes of ", record);
  DenseMatrix<T> out(int64_t(records), dim);
  for (size_t r = 0; r < records; ++r) {
    T* row = out.data() + r * size_t(dim);
    std::memcpy(row, bytes.data() + r * record + 4, size_t(dim) * 4);
    if constexpr (std::is_same_v<T, float>) {
      for (int32_t j = 0; j < dim; ++j) {
        TSR_CHECK(std::isfinite(row[j]), who, ": ", path, ": record ", r, " (byte ", r * record,
                  ") value ", j, " is ", row[j]);
      }
    }
  }
  return out;
}

template DenseMatrix<float> read_vecs<float>(const std::string&);
template DenseMatrix<int32_t> read_vecs<int32_t>(const std::string&);

#define TSR_IO_INSTANTIATE(V, I)                                                        \
  template Coo<V, I> read_matrix_market<V, I>(const std::string&, MatrixMarketHeader*); \
  template void write_matrix_market<V, I>(const std::string&, const Csr<V, I>&);        \
  template Coo<V, I> read_edge_list<V, I>(const std::string&, const EdgeListOptions&); \
  template Coo<V, I> read_sparse_file<V, I>(const std::string&);
TSR_FOR_EACH_STORAGE_TYPE(TSR_IO_INSTANTIATE)
#undef TSR_IO_INSTANTIATE

#define TSR_IO_INSTANTIATE_NPY(T)                          \
  template DenseMatrix<T> read_npy<T>(const std::string&); \
  template void write_npy<T>(const std::string&, const DenseView<const T>&);
TSR_IO_INSTANTIATE_NPY(float)
TSR_IO_INSTANTIATE_NPY(double)
TSR_IO_INSTANTIATE_NPY(bf16)
TSR_IO_INSTANTIATE_NPY(f16)
TSR_IO_INSTANTIATE_NPY(int32_t)
TSR_IO_INSTANTIATE_NPY(int64_t)
#undef TSR_IO_INSTANTIATE_NPY

}  // namespace tessera
