#include "schedule/schedule.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>

#include "core/error.h"

namespace tessera::schedule {

const char* op_name(Op op) { return op == Op::spmm ? "spmm" : "sddmm"; }

namespace {
// Knobs that several variants share (the same values, default and meaning).
const KnobSpec kRowThreads{"tpr", {1, 2, 4, 8, 16, 32}, 32, "threads per row (a sub-warp)"};
const KnobSpec kRowsPerBlock{"rpb", {1, 2, 4, 8, 16, 32, 64, 128, 256}, 8, "rows per thread block"};
const KnobSpec kVecB{"vec", {1, 2, 4}, 1, "consecutive features per thread (vector loads of B)"};
const KnobSpec kVecXY{"vec", {1, 2, 4}, 1, "consecutive features per thread (vector loads of X and Y)"};
const KnobSpec kTeamThreads{"tpe", {4, 8, 16, 32}, 32, "threads per team (one edge's dot product at a time)"};
const KnobSpec kEdgesPerTeam{"ept", {4, 8, 16, 32, 64, 128, 256}, 32,
                             "consecutive edges per team (a block holds 256 / tpe teams)"};
// The edge batches' runs: long enough to pay for a team's set-up (the large graphs they are for).
const KnobSpec kBatchEdgesPerTeam{"ept", {64, 128, 256}, 256,
                                  "consecutive edges per team (a block holds 256 / tpe teams)"};
}  // namespace

const std::vector<VariantSpec>& variants() {
  static const std::vector<VariantSpec> kVariants = {
      {"csr.row_split",
       Op::spmm,
       Format::csr,
       MemorySpace::device,
       {kRowThreads, kRowsPerBlock, kVecB},
       "a sub-warp of tpr threads per row; B rows gathered with vec-wide loads; no atomics"},
      {"csr.merge_path",
       Op::spmm,
       Format::csr,
       MemorySpace::device,
       {{"tpr", {4, 8, 16, 32}, 32, "threads per team"},
        {"vec", {1, 2, 4, 8}, 1,
         "consecutive features per thread (vector loads of B; 8: 16-byte loads of 16-bit values)"},
        {"ipt", {32, 64, 128, 256, 512, 1024, 2048, 4096, 8192}, 256,
         "merge-path items (row ends + nonzeros) per team"}},
       "rows + nnz split evenly over teams (merge path); rows shared by teams get their carries "
       "added by a second kernel in a fixed order; no atomics"},
      {"csr.nnz_split",
       Op::spmm,
       Format::csr,
       MemorySpace::device,
       {{"g", {4, 8}, 8, "gathers a team keeps in flight"},
        {"ept", {0, 128, 256, 512, 1024, 2048, 4096}, 512,
         "merge-path items (row ends + nonzeros) per team (0: one wave of teams)"},
        {"queue", {0, 1}, 1,
         "1: a wave of teams takes the stretches from a counter (balanced at run time); 0: a team a "
         "stretch"}},
       "16-bit values, F a multiple of 32: the merge path in equal stretches, teams of 4 lanes x 8 "
       "features; rows shared by teams get their carries added by a second kernel in a fixed "
       "order; no atomics"},
      {"csr.cusparse",
       Op::spmm,
       Format::csr,
       MemorySpace::device,
       {{"alg", {1, 2, 3}, 2, "cusparseSpMM CSR algorithm (CUSPARSE_SPMM_CSR_ALG1..3)"}},
       "cuSPARSE's generic SpMM (the vendor peer)",
       false},
      {"ell.row_split",
       Op::spmm,
       Format::ell,
       MemorySpace::device,
       {kRowThreads, kRowsPerBlock, kVecB},
       "csr.row_split over fixed-width rows; padding slots skipped; no atomics"},
      {"hyb.fused",
       Op::spmm,
       Format::hybrid,
       MemorySpace::device,
       {kRowThreads, kRowsPerBlock, kVecB,  // rows here are the parts' local rows
        {"atomic", {0, 1}, 0,
         "1: rows shared by parts meet through float atomics (one pass, bits vary run to run); "
         "0: a deterministic two-pass reduction"}},
       "every part of a hyb(c, k) matrix (ELL buckets, CSR parts) in one launch; atomic=1 is "
       "refused in deterministic mode"},
      {"bsr.tensor_core",
       Op::spmm,
       Format::bsr,
       MemorySpace::device,
       {{"ft", {32, 64}, 32, "features per warp"},
        {"wpr", {1, 2, 4}, 1, "warps splitting a block row's blocks (sums meet in shared memory)"}},
       "wpr warps per block row and ft features; MMA fragments loaded straight from global "
       "memory, mma.sync over bf16 / f16 or tf32 (f32 values: tf32 rounding); blocks up to "
       "32 x 64; no atomics"},
      {"bsr.cusparse",
       Op::spmm,
       Format::bsr,
       MemorySpace::device,
       {},
       "cuSPARSE's generic SpMM on BSR (CUSPARSE_SPMM_BSR_ALG1; the vendor peer); square, whole "
       "blocks",
       false},
      {"bsr.cusparse_blocked_ell",
       Op::spmm,
       Format::bsr,
       MemorySpace::device,
       {},
       "cuSPARSE's Blocked-ELL SpMM (CUSPARSE_SPMM_BLOCKED_ELL_ALG1) on a copy of the BSR with "
       "every block row padded to the longest (made per call, synchronising: hold an "
       "ops::CusparsePlan to make it once); square, whole blocks; f32 runs as tf32",
       false},
      {"csr.row_split",
       Op::sddmm,
       Format::csr,
       MemorySpace::device,
       {{"tpr", {4, 8, 16, 32}, 32, "threads per row (a team; one edge's dot product at a time)"},
        kVecXY},
       "a team per row, four edges in flight, team shuffle reductions"},
      {"csr.edge_group",
       Op::sddmm,
       Format::csr,
       MemorySpace::device,
       {kTeamThreads, kVecXY, kEdgesPerTeam},
       "nonzeros split evenly over teams, four edges in flight, team shuffle reductions"},
      {"csr.edge_batch",
       Op::sddmm,
       Format::csr,
       MemorySpace::device,
       {kTeamThreads, kVecXY, kBatchEdgesPerTeam},
       "csr.edge_group's split walked in batches: column indices a chunk ahead, eight Y rows in "
       "flight, X[row] held while the team stays on the row; F past one pass (tpe * vec) walked "
       "again, adding to the outputs"},
      {"csr.row_batch",
       Op::sddmm,
       Format::csr,
       MemorySpace::device,
       {kTeamThreads, kVecXY},
       "a warp per row, its 32 / tpe teams taking the row's edges in turn, eight Y rows in flight "
       "per team, column indices 64 at a time; F past one pass walked with the sums in registers"},
      {"coo.edge_group",
       Op::sddmm,
       Format::coo,
       MemorySpace::device,
       {kTeamThreads, kVecXY, kEdgesPerTeam},
       "csr.edge_group over a COO matrix: each edge carries its row"},
      {"csr.cusparse",
       Op::sddmm,
       Format::csr,
       MemorySpace::device,
       {},
       "cuSPARSE's cusparseSDDMM (the vendor peer)",
       false},
  };
  return kVariants;
}

const VariantSpec& find_variant(Op op, const std::string& name) {
  std::string known;
  for (const VariantSpec& v : variants()) {
    if (v.op != op) continue;
    if (v.name == name) return v;
    known += (known.empty() ? "" : ", ") + v.name;
  }
  TSR_FAIL("unknown ", op_name(op), " variant '", name, "' (known: ", known, ")");
}

int64_t Schedule::knob(const std::string& name) const {
  for (const auto& [k, v] : knobs) {
    if (k == name) return v;
  }
  TSR_FAIL("schedule '", to_string(), "' has no knob '", name, "'");
}

std::string Schedule::to_string() const {
  std::ostringstream os;
  os << variant;
  for (size_t i = 0; i < knobs.size(); ++i) {
    os << (i == 0 ? ":" : ",") << knobs[i].first << "=" << knobs[i].second;
  }
  return os.str();
}

Schedule with_defaults(Op op, const std::string& variant) {
  const VariantSpec& spec = find_variant(op, variant);
  Schedule s{op, variant, {}};
  for (const KnobSpec& k : spec.knobs) s.knobs.emplace_back(k.name, k.default_value);
  return s;
}

Schedule parse(Op op, const std::string& text) {
  const size_t colon = text.find(':');
  Schedule s = with_defaults(op, text.substr(0, colon));
  if (colon == std::string::npos) return s;
  const VariantSpec& spec = find_variant(op, s.variant);
  std::vector<bool> seen(spec.knobs.size(), false);
  std::istringstream items(text.substr(colon + 1));
  std::string item;
  while (std::getline(items, item, ',')) {
    const size_t eq = item.find('=');
    TSR_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < item.size(), "schedule '", text,
              "': '", item, "' is not knob=value");
    const std::string name = item.substr(0, eq), value_text = item.substr(eq + 1);
    const auto it = std::find_if(spec.knobs.begin(), spec.knobs.end(),
                                 [&](const KnobSpec& k) { return k.name == name; });
    TSR_CHECK(it != spec.knobs.end(), "schedule '", text, "': variant ", spec.name,
              " has no knob '", name, "'");
    const size_t index = size_t(it - spec.knobs.begin());
    TSR_CHECK(!seen[index], "schedule '", text, "': knob '", name, "' given twice");
    seen[index] = true;
    size_t used = 0;
    int64_t value = 0;
    try {
      value = std::stoll(value_text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    TSR_CHECK(used == value_text.size(), "schedule '", text, "': ", name, "=", value_text,
              " is not an integer");
    std::string allowed;
    for (int64_t v : it->values) allowed += (allowed.empty() ? "" : "|") + std::to_string(v);
    TSR_CHECK(std::find(it->values.begin(), it->values.end(), value) != it->values.end(),
              "schedule '", text, "': ", name, "=", value, " is not allowed (", allowed, ")");
    s.knobs[index].second = value;
  }
  return s;
}

int64_t vector_alignment(const void* p, size_t element_bytes) {
  const uintptr_t address = reinterpret_cast<uintptr_t>(p);
  int64_t k = 1;
  while (k < 8 && address % (2 * uintptr_t(k) * element_bytes) == 0) k *= 2;
  return k;
}

template <class V, class I>
Problem describe(Op op, const CsrView<V, I>& a, int64_t features, int64_t ld_b, int64_t ld_c) {
  Problem p;
  p.op = op;
  p.format = Format::csr;
  p.space = a.space;
  p.value = dtype_of<V>();
  p.index = dtype_of<I>();
  p.rows = a.rows;
  p.cols = a.cols;
  p.nnz = a.nnz;
  p.features = features;
  p.ld_b = ld_b;
  p.ld_c = ld_c;
  p.mean_row_length = a.rows > 0 ? double(a.nnz) / double(a.rows) : 0.0;
  if (a.space == MemorySpace::host) {  // one pass over the offsets; device arrays stay unknown
    p.max_row_length = 0;
    for (int64_t r = 0; r < a.rows; ++r) {
      p.max_row_length = std::max<int64_t>(p.max_row_length, int64_t(a.indptr[r + 1]) - int64_t(a.indptr[r]));
    }
  }
  return p;
}

template <class V, class I>
Problem describe(Op op, const BsrView<V, I>& a, int64_t features, int64_t ld_b, int64_t ld_c) {
  CsrView<V, I> blocks{a.rows, a.cols, a.num_blocks * a.block_rows * a.block_cols, nullptr,
                       nullptr, a.values, MemorySpace::device};
  Problem p = describe(op, blocks, features, ld_b, ld_c);  // device: offsets not read
  p.format = Format::bsr;
  p.space = a.space;
  p.block_rows = a.block_rows;
  p.block_cols = a.block_cols;
  return p;
}

template <class V, class I>
Problem describe(Op op, const CooView<V, I>& a, int64_t features, int64_t ld_b, int64_t ld_c) {
  CsrView<V, I> entries{a.rows, a.cols, a.nnz, nullptr, nullptr, a.values, MemorySpace::device};
  Problem p = describe(op, entries, features, ld_b, ld_c);
  p.format = Format::coo;
  p.space = a.space;
  return p;
}

template <class V, class I>
Problem describe(Op op, const EllView<V, I>& a, int64_t features, int64_t ld_b, int64_t ld_c) {
  CsrView<V, I> slots{a.rows, a.cols, a.rows * a.width, nullptr, nullptr, a.values,
                      MemorySpace::device};
  Problem p = describe(op, slots, features, ld_b, ld_c);
  p.format = Format::ell;
  p.space = a.space;
  p.max_row_length = a.width;
  return p;
}

template <class V, class I>
Problem describe(Op op, const Hybrid<V, I>& a, int64_t features, int64_t ld_b, int64_t ld_c) {
  int64_t local_rows = 0;
  for (const auto& part : a.parts) local_rows += part.part_rows();
  CsrView<V, I> rows{a.rows, a.cols, 0, nullptr, nullptr, nullptr, MemorySpace::device};
  Problem p = describe(op, rows, features, ld_b, ld_c);
  p.format = Format::hybrid;
  p.space = a.space();
  p.rows = local_rows;  // what the kernel's threads are dealt out over
  return p;
}

namespace {
Verdict no(std::string reason) { return Verdict{false, std::move(reason)}; }

bool has_knob(const VariantSpec& spec, const char* name) {
  for (const KnobSpec& k : spec.knobs) {
    if (k.name == name) return true;
  }
  return false;
}

// Whether rows ld elements apart fit the 32-bit byte strides of the gather loops of
// csr.merge_path (B's rows) and csr.row_batch (Y's rows): under 2 GiB.
bool rows_within_32_bit_stride(int64_t ld, DType value) {
  return ld <= int64_t(INT32_MAX) / int64_t(dtype_size(value));
}
}  // namespace

Verdict can_implement(const Schedule& s, const Problem& p) {
  if (s.op != p.op) return no(std::string("schedule is for ") + op_name(s.op) + ", problem is " + op_name(p.op));
  const VariantSpec& spec = find_variant(s.op, s.variant);
  if (spec.format != p.format) {
    return no(s.variant + " takes " + format_name(spec.format) + ", the matrix is " + format_name(p.format));
  }
  if (spec.space != p.space) {
    return no(s.variant + " runs on the " + memory_space_name(spec.space) + ", the operands are in " +
              memory_space_name(p.space) + " memory");
  }
  if (p.deterministic && !spec.deterministic) {
    return no(s.variant + " does not promise the same bits on every run; deterministic mode takes "
              "Tessera's own kernels");
  }
  if (has_knob(spec, "vec")) {
    const int64_t vec = s.knob("vec");
    if (vec > 1 && (p.ld_b % vec != 0 || p.ld_c % vec != 0)) {
      return no("vec=" + std::to_string(vec) + " needs the leading dimensions of " +
                (s.op == Op::spmm ? "B and C (" : "X and Y (") +
                std::to_string(p.ld_b) + ", " + std::to_string(p.ld_c) + ") to be multiples of " +
                std::to_string(vec));
    }
    if (vec > 1 && p.features < vec) {
      return no("vec=" + std::to_string(vec) + " is wider than F = " + std::to_string(p.features));
    }
    if (vec > p.operand_align) {
      return no("vec=" + std::to_string(vec) + " needs the first elements of " +
                (s.op == Op::spmm ? "B and C" : "X and Y") + " aligned to " + std::to_string(vec) +
                " elements; they are aligned to " + std::to_string(p.operand_align));
    }
  }
  if (s.op == Op::spmm && has_knob(spec, "rpb")) {  // csr.row_split, ell.row_split, hyb.fused
    const int64_t threads = s.knob("tpr") * s.knob("rpb");
    if (threads < 32 || threads > 512) {
      return no("tpr * rpb = " + std::to_string(threads) + " threads per block; needs 32..512");
    }
  }
  if (s.op == Op::spmm && s.variant == "csr.merge_path") {
    // Its gather loop addresses B's rows with a 32-bit byte stride.
    if (!rows_within_32_bit_stride(p.ld_b, p.value)) {
      return no("B's leading dimension " + std::to_string(p.ld_b) +
                " is a row stride over 2 GiB; the merge path gathers with 32-bit strides");
    }
    if (s.knob("vec") == 8 && dtype_size(p.value) != 2) {
      return no("vec=8 (16-byte loads of 8 features) takes bf16 or f16 values, not " +
                std::string(dtype_name(p.value)) + "; use vec <= 4");
    }
    const int64_t tile = s.knob("tpr") * s.knob("vec");
    if ((p.features + tile - 1) / tile > 65535) {
      return no("F = " + std::to_string(p.features) + " needs more than 65535 feature tiles of " +
                std::to_string(tile) + " (raise tpr or vec)");
    }
  }
  if (s.op == Op::spmm && s.variant == "csr.nnz_split") {
    if (dtype_size(p.value) != 2) {
      return no("csr.nnz_split takes bf16 or f16 values (16-byte loads of 8 features), not " +
                std::string(dtype_name(p.value)));
    }
    if (p.features % 32 != 0 || p.features / 32 > 65535) {
      return no("csr.nnz_split takes F a multiple of 32 (at most 65535 tiles); F = " +
                std::to_string(p.features));
    }
    if (p.ld_b % 8 != 0 || p.ld_c % 8 != 0 || p.operand_align < 8) {
      return no("csr.nnz_split needs B and C rows aligned to 8 elements (leading dimensions " +
                std::to_string(p.ld_b) + ", " + std::to_string(p.ld_c) + ", first elements aligned to " +
                std::to_string(p.operand_align) + ")");
    }
  }
  if (s.op == Op::sddmm && s.variant == "csr.row_batch" && !rows_within_32_bit_stride(p.ld_c, p.value)) {
    return no("Y's leading dimension " + std::to_string(p.ld_c) +
              " is a row stride over 2 GiB; csr.row_batch gathers with 32-bit strides");
  }
  if (s.variant == "hyb.fused" && s.knob("atomic") == 1 && p.deterministic) {
    return no("hyb.fused:atomic=1 adds with float atomics (bits vary run to run); deterministic "
              "mode needs atomic=0");
  }
  if (spec.format == Format::bsr && (p.block_rows < 1 || p.block_cols < 1)) {
    return no("BSR blocks of " + std::to_string(p.block_rows) + "x" + std::to_string(p.block_cols) +
              " (needs at least 1x1)");
  }
  if (s.variant == "bsr.tensor_core") {
    if (p.block_rows > 32 || p.block_cols > 64) {
      return no("bsr.tensor_core takes blocks up to 32x64, not " + std::to_string(p.block_rows) +
                "x" + std::to_string(p.block_cols));
    }
    if ((p.features + s.knob("ft") - 1) / s.knob("ft") > 65535) {
      return no("F = " + std::to_string(p.features) + " needs more than 65535 feature tiles of " +
                std::to_string(s.knob("ft")));
    }
  }
  const bool cusparse_bsr = s.variant == "bsr.cusparse" || s.variant == "bsr.cusparse_blocked_ell";
  if (cusparse_bsr && p.block_rows != p.block_cols) {
    return no(s.variant + " takes square blocks only, not " + std::to_string(p.block_rows) + "x" +
              std::to_string(p.block_cols));
  }
  if (cusparse_bsr && (p.rows % p.block_rows != 0 || p.cols % p.block_cols != 0)) {
    return no(s.variant + " takes whole blocks only: " + std::to_string(p.rows) + "x" +
              std::to_string(p.cols) + " is not a multiple of the " + std::to_string(p.block_rows) +
              "x" + std::to_string(p.block_cols) + " blocks");
  }
  if (s.variant.find(".cusparse") != std::string::npos && p.value != DType::f32) {
    return no(s.variant + " runs f32 values in this version (got " + dtype_name(p.value) + ")");
  }
  return Verdict{};
}

std::vector<Schedule> space(const Problem& p) {
  std::vector<Schedule> out;
  for (const VariantSpec& spec : variants()) {
    if (spec.op != p.op) continue;
    // Odometer over the knobs' value lists.
    std::vector<size_t> at(spec.knobs.size(), 0);
    while (true) {
      Schedule s{spec.op, spec.name, {}};
      for (size_t k = 0; k < spec.knobs.size(); ++k) {
        s.knobs.emplace_back(spec.knobs[k].name, spec.knobs[k].values[at[k]]);
      }
      if (can_implement(s, p)) out.push_back(std::move(s));
      size_t k = 0;
      while (k < at.size() && ++at[k] == spec.knobs[k].values.size()) at[k++] = 0;
      if (k == at.size()) break;
    }
  }
  return out;
}

namespace {

// Threads a launch needs to fill the GPU once: an H100's 132 SMs x 2048 resident threads. The
// heuristic sizes work units against it; being off by 2x on another GPU costs little.
constexpr double kGpuThreads = 132.0 * 2048.0;
constexpr double kWarpLanes = 32.0;
// Nonzeros from which the SDDMM default takes the edge batches (at every F, with 4-wide loads).
constexpr int64_t kLargeSddmmNonzeros = int64_t(16) << 20;

// The widest vector load (4, 2, 1) that F and both leading dimensions allow.
int64_t widest_vec(const Problem& p) {
  for (int64_t v : {4, 2}) {
    if (p.features % v == 0 && p.ld_b % v == 0 && p.ld_c % v == 0 && p.features >= v &&
        v <= p.operand_align) {
      return v;
    }
  }
  return 1;
}

// Threads to cover F with vec-wide loads, rounded up to a power of two in [lo, 32].
int64_t lanes_for(const Problem& p, int64_t vec, int64_t lo) {
  const int64_t lanes = std::max<int64_t>(1, (p.features + vec - 1) / vec);
  int64_t t = lo;
  while (t < lanes && t < 32) t *= 2;
  return t;
}

// The power of two nearest to x (in log scale), clamped to [lo, hi].
int64_t nearest_pow2(double x, int64_t lo, int64_t hi) {
  int64_t v = lo;
  while (v < hi && double(v) * 1.4142135 < x) v *= 2;
  return v;
}

void check_default(const Schedule& s, const Problem& p) {
  const Verdict v = can_implement(s, p);
  TSR_CHECK(v.ok, "default schedule ", s.to_string(), " does not apply: ", v.reason);
}

// A team a row suits long rows only when there are many of them: the longest row is short (a
// warp walks it in a few dozen steps), or the rows give a warp each to a whole GPU. A few long
// rows, however even (a one-row matrix is perfectly balanced), left to one team each run on a
// handful of warps: one row of 16.7M nonzeros, bf16 at F = 32, took 1.39 s in the row split and
// 0.47 ms in csr.nnz_split (H200, session 27, bench/RESULTS.md).
constexpr int64_t kShortForATeam = 1024;
bool rows_share_the_work(const Problem& p) {
  return p.max_row_length >= 0 &&
         (p.max_row_length <= kShortForATeam || double(p.rows) * kWarpLanes >= kGpuThreads);
}

// No row much longer than the mean, and rows_share_the_work: a sub-warp per row keeps its threads
// busy without stragglers. Longer ones (power-law hubs), few long ones, or an unknown longest row
// call for an nnz-balanced variant.
bool balanced_rows(const Problem& p) {
  return p.max_row_length >= 0 && double(p.max_row_length) <= std::max(256.0, 16.0 * p.mean_row_length) &&
         rows_share_the_work(p);
}

// Rows of 16 or more edges on average and none over 4x the mean (the longest known), and
// rows_share_the_work: FEM matrices (bcsstk33: 68 a row, at most 141; fidapex6: 30, at most 62),
// not power-law graphs.
bool even_moderate_rows(const Problem& p) {
  return p.max_row_length >= 0 && p.mean_row_length >= 16.0 &&
         double(p.max_row_length) <= 4.0 * p.mean_row_length && rows_share_the_work(p);
}

Schedule default_sddmm(const Problem& p) {
  // Teams of 4..8 lanes with vector loads (the sweep's winners on the H100 suite; wider on small
  // matrices, below). Rows of at most 16 edges (road networks): a team per row. Otherwise a row
  // is a chain of edges four at a time (one of 168 edges cost Cora 7x), so runs of edges about
  // one row long, shortened until the teams just fill the GPU (filling it twice over cost
  // bcsstk33 1.3x on the H200; GNN-sized graphs fill it many times over at a row's length
  // either way).
  const int64_t vec = widest_vec(p);
  const int64_t narrow_tpe = std::min<int64_t>(8, lanes_for(p, vec * 4, 4));
  // bf16 / f16 X and Y: edge groups of 4 lanes (arxiv-like bf16 F = 128: 0.80x the time of 8
  // lanes, which f32 takes there; F = 512: 1.01-1.04x) and the edge batches on the large graphs
  // at every F (below). Measured on the H200 after the 16-bit loads were packed (session 20;
  // bench/RESULTS.md): bf16 now runs at 1.00-1.22x f32's speed on the arxiv-like graphs. The row
  // split's rule is f32's; in bf16 it has been measured on long rows only.
  const bool sixteen_bit = dtype_size(p.value) == 2;
  if (p.format == Format::csr && p.max_row_length >= 0 && p.max_row_length <= 16) {
    return Schedule{Op::sddmm, "csr.row_split", {{"tpr", narrow_tpe}, {"vec", vec}}};
  }
  // Large graphs (16M+ nonzeros): the edge batches at every F, 4-wide loads, teams of 8 to 32
  // lanes (one pass over F to 128, then passes of 128), runs of 256 edges. On the H200
  // (bench/RESULTS.md): at F = 32 and 64 they took 0.78-0.91x the edge groups' time on the four
  // GNN-sized graphs (76-112M nonzeros; daacd08), teams of 32 at F = 128 0.90x on the products
  // graphs and 0.98-0.99x on the reddit ones (session 20); on every matrix under 1.2M nonzeros
  // but one case they were slower (a team's set-up is not paid back). 16M nonzeros in runs of
  // 256 are two waves of 8-lane teams on the H200; between 1.2M and 76M nothing has been
  // measured. Since their full-width passes lost their per-lane branches (session 23, 01e07e1:
  // 0.81-0.94x the time in f32, 0.74-0.83x in bf16) they beat the edge groups of 16 lanes, the
  // default there before, at F = 256 (18.1-18.5 ms on the products graphs against 19.5-19.8;
  // 9.3-9.5 against 10.3-10.7 on the reddit ones) and F = 512 (one listed run, 65cbf0e: 41.0-41.5
  // against 43.6-43.8 and 21.2-21.4 against 22.2-22.4). 16-bit values took them at every F
  // before that (reddit-like bf16 F = 128 4.95 ms against the edge groups' 7.65). Wider F is
  // unmeasured.
  const int64_t one_pass_batch = lanes_for(p, 4, 8);
  if (p.format == Format::csr && vec == 4 && p.nnz >= kLargeSddmmNonzeros) {
    return Schedule{Op::sddmm, "csr.edge_batch", {{"tpe", one_pass_batch}, {"vec", 4}, {"ept", 256}}};
  }
  // Rows of moderate, even length (FEM matrices: 16 or more edges on average, none over 4x the
  // mean), f32 with 4-wide loads: a warp per row (csr.row_batch), where the edge groups' set-up
  // and short runs left them behind cuSPARSE's warp-per-row kernel. Alternated runs on the H200 at
  // 0c90651 (session 23, bench/RESULTS.md; the kernel's full passes without per-lane branches):
  // teams of 8 at F = 32-128 (bcsstk33 17.0-17.3 us at F = 32 against 17.7-18.0 with 4, fidapex6
  // alike; F = 64 22.4-22.5 against 24.9-25.5), 16 beyond (bcsstk33 F = 512 94.5-94.9 against
  // 99.1-99.3; F = 256 a tie). fidapex6's 1651 rows (206 blocks) leave the GPU short: row_batch
  // still wins there to F = 128 (9.4-9.5 us against the edge groups' 10.8-10.9), ties at 256 and
  // loses at 512 (20.7-20.8 against 18.2-18.4), so past F = 128 only when the rows' warps fill the
  // GPU once. Teams of 4 where one pass of them covers F (F <= 16: unmeasured). Unmeasured in
  // 16-bit and on matrices of 16M+ nonzeros (the rules above).
  const bool row_warps_fill_gpu = double(p.rows) * kWarpLanes >= kGpuThreads;
  if (p.format == Format::csr && !sixteen_bit && vec == 4 && even_moderate_rows(p) &&
      (p.features <= 128 || row_warps_fill_gpu) && rows_within_32_bit_stride(p.ld_c, p.value)) {
    const int64_t tpe = p.features <= 16 ? 4 : (p.features <= 128 ? 8 : 16);
    return Schedule{Op::sddmm, "csr.row_batch", {{"tpe", tpe}, {"vec", 4}}};
  }
  // A small matrix leaves lanes idle: wider teams, up to one pass over F, put them to work. From
  // 4 lanes to 8 while runs of 4 edges fill under half the GPU's threads (fidapex6 F = 64: 9.8 us
  // against 10.7 on the H200); past 8 only under a third (Cora F = 512: 32 lanes 13 us against
  // 21 at 8; ca-GrQc, at 16 lanes 0.43 of the GPU, ran 13-34% slower than at 8).
  const double min_teams = double(p.nnz) / 4.0;
  const int64_t one_pass = lanes_for(p, vec, 4);
  int64_t tpe = sixteen_bit ? 4 : narrow_tpe;
  while (tpe < one_pass &&
         min_teams * double(2 * tpe) <= kGpuThreads / (2 * tpe <= 8 ? 2.0 : 3.0)) {
    tpe *= 2;
  }
  const double fill = double(p.nnz) * double(tpe) / kGpuThreads;
  const int64_t ept = nearest_pow2(std::min(std::max(p.mean_row_length, 1.0), fill), 4, 256);
  // COO: the same split; its edges carry their rows, so a run need not follow a row.
  const char* variant = p.format == Format::coo ? "coo.edge_group" : "csr.edge_group";
  return Schedule{Op::sddmm, variant, {{"tpe", tpe}, {"vec", vec}, {"ept", ept}}};
}

// Rows this short on average (road networks: 2 per row) leave a team per row waiting on three
// dependent loads for each couple of gathers; the merge path streams many rows per team.
constexpr double kShortRows = 3.0;
// Nonzeros from which a CSR counts as a large graph for the 16-bit F = 32 rule of default_spmm.
constexpr int64_t kLargeGraphNnz = int64_t(16) << 20;

// A sub-warp per row: threads to cover F with the widest loads, narrowed while the rows would not
// fill a quarter of the GPU; 128-thread blocks (the sweep's winners on every balanced matrix of
// the H200 suite, 256 cost bcsstk33 1.2x; smaller blocks spread a small matrix over more SMs).
Schedule sub_warp_per_row(const Problem& p, const char* variant) {
  int64_t vec = widest_vec(p);
  int64_t tpr = lanes_for(p, vec, 1);
  while (double(p.rows) * double(tpr) < kGpuThreads / 4 && vec > 1 && tpr < 32) vec /= 2, tpr *= 2;
  const int64_t rpb = std::max<int64_t>(1, 128 / tpr);
  return Schedule{Op::spmm, variant, {{"tpr", tpr}, {"rpb", rpb}, {"vec", vec}}};
}

Schedule default_spmm(const Problem& p) {
  if (p.format == Format::bsr) {
    // 32 features a warp, 64 for blocks of more than 16 rows at F >= 128 (the H200 sweep's
    // winners: ft=32 took 0.096 ms where ft=64 took 0.155 on 16x16 blocks at F = 64). Split a
    // block row over more warps while the warps would not fill the GPU twice and each still gets
    // a few blocks.
    // 64 also when F needs more than 65535 tiles of 32 (the grid's y limit).
    const int64_t ft = (p.block_rows > 16 && p.features >= 128) || (p.features + 31) / 32 > 65535 ? 64 : 32;
    const double block_rows = double((p.rows + p.block_rows - 1) / std::max<int64_t>(p.block_rows, 1));
    const double blocks = double(p.nnz) / double(std::max<int64_t>(p.block_rows * p.block_cols, 1));
    const double tiles = double((p.features + ft - 1) / ft);
    int64_t wpr = 1;
    while (wpr < 4 && block_rows * tiles * double(wpr) * 32 < 2 * kGpuThreads &&
           blocks / std::max(block_rows, 1.0) >= 4.0 * double(wpr)) {
      wpr *= 2;
    }
    const Schedule tensor_cores{Op::spmm, "bsr.tensor_core", {{"ft", ft}, {"wpr", wpr}}};
    // Blocks too large for the tensor-core kernel: cuSPARSE's BSR where it can run them.
    const Schedule peer = with_defaults(Op::spmm, "bsr.cusparse");
    if (!can_implement(tensor_cores, p) && can_implement(peer, p)) return peer;
    return tensor_cores;
  }
  if (p.format == Format::ell) return sub_warp_per_row(p, "ell.row_split");
  if (p.format == Format::hybrid) {
    Schedule s = sub_warp_per_row(p, "hyb.fused");
    s.knobs.emplace_back("atomic", 0);
    return s;
  }
  int64_t vec = widest_vec(p);
  if (balanced_rows(p) && p.mean_row_length >= kShortRows) {  // otherwise the merge path
    return sub_warp_per_row(p, "csr.row_split");
  }
  // 16-bit values at F = 32 on a large graph: csr.nnz_split's 4-lane teams keep more 64-byte
  // gathers in flight than the merge path's. bf16 against our f32 on the H200 (RESULTS.md,
  // "csr.nnz_split made deterministic"): 1.57x / 1.54x / 1.31x / 1.38x on reddit-like, its -local
  // form, products-like and its -local form, against the merge path's 1.23x / 1.27x / 1.08x /
  // 1.16x. Stretches of 512 taken from a queue by a wave of teams: one wave of fixed stretches is
  // as fast on the relabelled graphs but 0.68x on products-like-local, and the statistics here
  // cannot tell the two apart. Measured only on 76M-112M nonzeros; from 16M nonzeros a stretch
  // of 512 still makes more teams than the GPU holds.
  const bool sixteen_bit = p.value == DType::bf16 || p.value == DType::f16;
  if (sixteen_bit && p.features == 32 && p.nnz >= kLargeGraphNnz) {
    const Schedule nnz_split{Op::spmm, "csr.nnz_split", {{"g", 8}, {"ept", 512}, {"queue", 1}}};
    if (can_implement(nnz_split, p)) return nnz_split;
  }
  int64_t tpr = lanes_for(p, vec, 4);
  const int64_t tiles = (p.features + tpr * vec - 1) / (tpr * vec);
  // Items per team ~ sqrt(path) x lanes / 64 for one pass over F: the sweep's winners on the H100
  // suite, from 128 at F = 32 on a 1M-item path to 4096 at F = 128 on a 77M-item one. Longer
  // stretches mean fewer carries and searches, shorter ones more teams in flight. F over several
  // passes walks the path once a pass: ~ sqrt(path) / 4 then (the H200 sweep at F = 256 / 512:
  // luxembourg 99 / 189 us against 108 / 192 at the old 4x / 8x that, arxiv-like 162 / 281
  // against 163 / 322, reddit-like 8.63 / 16.98 ms against 8.93 / 17.09; products-like 4% slower).
  const double path = double(p.rows + p.nnz);
  const double ipt_lanes = tiles > 1 ? 16.0 : double(tpr);
  const int64_t ipt = nearest_pow2(std::sqrt(path) * ipt_lanes / 64.0, 32, 8192);
  // Teams too few to fill a quarter of the GPU (a path of ~1M items at F <= 64): narrower loads,
  // more lanes per team, as for the row split. On the H200 at F = 32 since the 32-bit gather
  // loop (6c198fb): arxiv-like 8 x 4 lanes 60.5 us, 16 x 2 48.7, 32 x 1 55.7 (ipt = 128);
  // luxembourg 16 x 2 30.1 us, 32 x 1 34.0 (ipt = 64). GNN-sized graphs have teams to spare
  // and keep the widest loads.
  while (path / double(ipt) * double(tpr) < kGpuThreads / 4 && vec > 1 && tpr < 32) vec /= 2, tpr *= 2;
  const Schedule merge_path{Op::spmm, "csr.merge_path", {{"tpr", tpr}, {"vec", vec}, {"ipt", ipt}}};
  // A problem the merge path cannot run (B rows more than 2 GiB apart, a view into a huge
  // matrix; more than 65535 feature tiles): the row split, which takes any stride and width.
  return can_implement(merge_path, p) ? merge_path : sub_warp_per_row(p, "csr.row_split");
}

}  // namespace

Schedule default_schedule(const Problem& p) {
  const Schedule s = p.op == Op::sddmm ? default_sddmm(p) : default_spmm(p);
  check_default(s, p);
  return s;
}

#define TSR_INSTANTIATE_DESCRIBE(V, I)                                             \
  template Problem describe(Op, const CsrView<V, I>&, int64_t, int64_t, int64_t); \
  template Problem describe(Op, const BsrView<V, I>&, int64_t, int64_t, int64_t); \
  template Problem describe(Op, const CooView<V, I>&, int64_t, int64_t, int64_t); \
  template Problem describe(Op, const EllView<V, I>&, int64_t, int64_t, int64_t); \
  template Problem describe(Op, const Hybrid<V, I>&, int64_t, int64_t, int64_t);
TSR_FOR_EACH_STORAGE_TYPE(TSR_INSTANTIATE_DESCRIBE)

}  // namespace tessera::schedule
