#include "cli/matrix_source.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>

#include <unistd.h>

#include "core/error.h"
#include "core/random.h"
#include "formats/convert.h"
#include "formats/generators.h"
#include "formats/io.h"

namespace tessera::cli {

namespace {

// "name:k=v,k=v" -> name and the key/value map; every key must be consumed by the generator.
// Numbers are decimal (an exponent is allowed: n=1e6); hex, inf and nan are refused.
struct Spec {
  std::string text;  // the whole spec, for messages
  std::string name;
  std::map<std::string, std::string> args;

  double number(const std::string& key, double fallback) {
    auto it = args.find(key);
    if (it == args.end()) return fallback;
    const std::string value = it->second;
    args.erase(it);
    const bool decimal =
        !value.empty() && value.find_first_not_of("0123456789+-.eE") == std::string::npos;
    char* end = nullptr;
    const double v = decimal ? std::strtod(value.c_str(), &end) : 0.0;
    TSR_CHECK(decimal && end && *end == '\0' && std::isfinite(v), "generator '", name, "': ", key,
              "=", value, " is not a finite decimal number");
    return v;
  }
  int64_t integer(const std::string& key, int64_t fallback) {
    const auto it = args.find(key);
    const std::string value = it == args.end() ? std::string() : it->second;
    const double v = number(key, double(fallback));
    TSR_CHECK(v >= -0x1p63 && v < 0x1p63, "generator '", name, "': ", key, "=", value,
              " is out of the int64 range");
    TSR_CHECK(v == std::trunc(v), "generator '", name, "': ", key, "=", value, " must be an integer");
    return int64_t(v);
  }
  void finish() {
    TSR_CHECK(args.empty(), "generator '", name, "': unknown parameter '",
              args.empty() ? "" : args.begin()->first, "'");
  }
};

Spec parse_spec(const std::string& text) {
  Spec s;
  s.text = text;
  const size_t colon = text.find(':');
  s.name = text.substr(0, colon);
  TSR_CHECK(!s.name.empty(), "generator spec '", text, "' has no generator name before ':'");
  if (colon == std::string::npos) return s;
  size_t pos = colon + 1;
  while (pos <= text.size()) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    const std::string item = text.substr(pos, comma - pos);
    if (!item.empty()) {
      const size_t eq = item.find('=');
      TSR_CHECK(eq != std::string::npos && eq > 0, "generator spec '", text, "': '", item,
                "' is not key=value");
      const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
      TSR_CHECK(!value.empty(), "generator spec '", text, "': ", key, "= has no value");
      TSR_CHECK(s.args.emplace(key, value).second, "generator spec '", text, "': ", key,
                " is given twice");
    }
    pos = comma + 1;
  }
  return s;
}

}  // namespace

template <class V, class I>
Csr<V, I> load_matrix(const std::string& input, const std::string& generate) {
  TSR_CHECK(input.empty() != generate.empty(), "give exactly one of --input FILE or --generate SPEC");
  if (!input.empty()) {
    Coo<V, I> coo = read_sparse_file<V, I>(input);
    // coo_to_csr and canonicalize hold about four row-length arrays at once.
    require_host_memory(double(coo.rows + 1) * double(24 + 2 * sizeof(I)),
                        "the row pointers of the " + std::to_string(coo.rows) + " x " +
                            std::to_string(coo.cols) + " matrix that " + input + " declares");
    Csr<V, I> csr = coo_to_csr(coo);
    coo = Coo<V, I>{};  // freed before canonicalize's copy
    // A file's duplicate entries are summed, as scipy's tocsr() does, so every format holds the
    // same matrix.
    try {
      return canonicalize(csr);
    } catch (const Error& e) {
      TSR_FAIL(input, ": ", e.reason());  // name the file
    }
  }
  Spec s = parse_spec(generate);
  GenValues g;
  g.seed = uint64_t(s.integer("seed", 1));
  g.unit_values = s.integer("unit", 0) != 0;
  Csr<V, I> out;
  if (s.name == "rmat") {
    RmatParams p;
    const int64_t scale = s.integer("scale", 14);
    TSR_CHECK(scale >= 0 && scale <= 40, "generator 'rmat': scale=", scale, " must be in [0, 40]");
    p.scale = int(scale);
    p.edge_factor = s.number("ef", 16);
    p.a = s.number("a", p.a);
    p.b = s.number("b", p.b);
    p.c = s.number("c", p.c);
    p.d = 1.0 - p.a - p.b - p.c;
    p.symmetrize = s.integer("sym", 0) != 0;
    p.remove_self_loops = s.integer("loops", 1) == 0;
    p.permute_vertices = s.integer("permute", 1) != 0;
    s.finish();
    // The draws are held as 8-byte keys and sorted (twice that at the peak).
    require_host_memory(16.0 * p.edge_factor * std::ldexp(1.0, std::clamp(p.scale, 0, 62)),
                        "the R-MAT draws of '" + generate + "'");
    out = generate_rmat<V, I>(p, g);
  } else if (s.name == "er") {
    const int64_t rows = s.integer("rows", 10000);
    const int64_t cols = s.integer("cols", rows);
    const double density = s.number("density", 0.001);
    s.finish();
    out = generate_erdos_renyi<V, I>(rows, cols, density, g);
  } else if (s.name == "banded") {
    const int64_t n = s.integer("n", 10000), lower = s.integer("lower", 2);
    const int64_t upper = s.integer("upper", lower);
    s.finish();
    out = generate_banded<V, I>(n, lower, upper, g);
  } else if (s.name == "clustered") {
    const int64_t n = s.integer("n", 10000), block = s.integer("block", 64);
    const double inner = s.number("inner", 0.2), outer = s.number("outer", 0.0005);
    s.finish();
    out = generate_clustered<V, I>(n, block, inner, outer, g);
  } else if (s.name == "powerlaw") {
    const int64_t n = s.integer("n", 10000);
    const double deg = s.number("deg", 16), exponent = s.number("exp", 2.1);
    const double locality = s.number("locality", 0.5);
    const int64_t window = s.integer("window", 64);
    s.finish();
    out = generate_power_law<V, I>(n, deg, exponent, locality, window, g);
  } else {
    TSR_FAIL("unknown generator '", s.name, "' (expected rmat, er, banded, clustered or powerlaw)");
  }
  return out;
}

namespace {
// Bytes this process can still allocate without swapping: Linux's MemAvailable (free memory
// plus the caches it would drop), capped by a cgroup v2 memory limit (a container's); the
// physical memory where neither can be read; <= 0 when nothing is known.
double available_host_memory() {
  double available = double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGESIZE));
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  double kib = 0;
  while (meminfo >> key >> kib) {
    if (key == "MemAvailable:") {
      available = kib * 1024.0;
      break;
    }
    meminfo.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  std::ifstream limit_file("/sys/fs/cgroup/memory.max"), used_file("/sys/fs/cgroup/memory.current");
  std::string limit;
  double used = 0;
  if (limit_file >> limit && limit != "max" && used_file >> used) {
    char* end = nullptr;
    const double cap = std::strtod(limit.c_str(), &end);
    if (end != limit.c_str() && cap > 0) available = std::min(available, std::max(cap - used, 0.0));
  }
  return available;
}
}  // namespace

void require_host_memory(double bytes, const std::string& what) {
  const double available = available_host_memory();
  TSR_CHECK(available <= 0 || bytes <= available, what, " need ", bytes / double(1 << 30), " GiB but ",
            available / double(1 << 30), " GiB of memory are available");
}

std::string describe_source(const std::string& input, const std::string& generate) {
  return input.empty() ? generate : input;
}

DenseMatrix<float> load_points(const std::string& input, const std::string& generate) {
  TSR_CHECK(input.empty() != generate.empty(), "give exactly one of --input and --generate");
  if (!input.empty()) {
    const auto ends_with = [&](const std::string& ext) {  // any case: .FVECS too
      if (input.size() < ext.size()) return false;
      for (size_t i = 0; i < ext.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(input[input.size() - ext.size() + i])) != ext[i]) return false;
      }
      return true;
    };
    if (ends_with(".fvecs")) return read_vecs<float>(input);
    if (ends_with(".npy")) return read_npy<float>(input);
    TSR_FAIL(input, ": points are read from .fvecs or .npy files");
  }
  Spec s = parse_spec(generate);
  const int64_t n = s.integer("n", 100000), d = s.integer("d", 128);
  const uint64_t seed = uint64_t(s.integer("seed", 1));
  TSR_CHECK(n >= 0 && d >= 0, "generator '", s.name, "': n and d must be non-negative");
  require_host_memory(double(n) * double(d) * sizeof(float),
                      "the " + std::to_string(n) + " x " + std::to_string(d) + " points of '" + generate + "'");
  Rng rng(seed);
  DenseMatrix<float> x(n, d);
  if (s.name == "blobs") {  // points around `centers` random centres in [-1, 1)^d
    const int64_t centers = s.integer("centers", 100);
    const double spread = s.number("spread", 0.1);
    s.finish();
    TSR_CHECK(centers >= 1, "generator 'blobs': centers must be positive");
    TSR_CHECK(spread >= 0, "generator 'blobs': spread=", spread, " must be >= 0");
    require_host_memory(double(centers) * double(d) * sizeof(float),
                        "the " + std::to_string(centers) + " blob centres of '" + generate + "'");
    std::vector<float> c(static_cast<size_t>(centers * d));
    for (float& v : c) v = float(rng.uniform(-1, 1));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t k = int64_t(rng.below(uint64_t(centers)));
      for (int64_t t = 0; t < d; ++t) x(i, t) = c[size_t(k * d + t)] + float(rng.uniform(-spread, spread));
    }
  } else if (s.name == "uniform") {
    s.finish();
    for (int64_t i = 0; i < n * d; ++i) x.data()[i] = float(rng.uniform(-1, 1));
  } else {
    TSR_FAIL("unknown point generator '", s.name, "' (expected blobs or uniform)");
  }
  return x;
}

#define TSR_INSTANTIATE_LOAD(V, I) \
  template Csr<V, I> load_matrix<V, I>(const std::string&, const std::string&);
TSR_FOR_EACH_STORAGE_TYPE(TSR_INSTANTIATE_LOAD)

}  // namespace tessera::cli
