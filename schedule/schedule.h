// Schedules: which kernel variant runs an op, with which knob values. A schedule has a readable
// string form that parses back, e.g. "csr.row_split:tpr=8,rpb=4,vec=4" or "csr.cusparse:alg=2".
// Every variant is registered with its knobs and their allowed values; can_implement() says
// whether a schedule applies to a problem, and why not when it does not.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "formats/sparse.h"

namespace tessera::schedule {

enum class Op { spmm, sddmm };
const char* op_name(Op op);

/// A knob of a variant: its name, the values it may take and the one used when unspecified.
struct KnobSpec {
  std::string name;
  std::vector<int64_t> values;
  int64_t default_value = 0;
  std::string doc;
};

/// A kernel variant: the op it implements, on which format and memory space, and its knobs.
struct VariantSpec {
  std::string name;  // "csr.row_split"
  Op op = Op::spmm;
  Format format = Format::csr;
  MemorySpace space = MemorySpace::device;
  std::vector<KnobSpec> knobs;
  std::string doc;
  /// The same bits on every run for the same inputs (no floating-point atomics, a fixed reduction
  /// order). Deterministic mode (Problem::deterministic) admits only such variants.
  bool deterministic = true;
};

/// Every registered variant of every op.
const std::vector<VariantSpec>& variants();
/// The variant named name for op; throws tessera::Error listing the known ones when absent.
const VariantSpec& find_variant(Op op, const std::string& name);

/// @brief A variant and a value for each of its knobs (in the variant's knob order).
struct Schedule {
  Op op = Op::spmm;
  std::string variant;
  std::vector<std::pair<std::string, int64_t>> knobs;

  /// The value of knob name; throws when the schedule has no such knob.
  int64_t knob(const std::string& name) const;
  /// "variant:knob=value,..." (no colon when the variant has no knobs).
  std::string to_string() const;
  bool operator==(const Schedule& o) const {
    return op == o.op && variant == o.variant && knobs == o.knobs;
  }
};

/// Parses a schedule's string form; knobs left out take their defaults. Throws tessera::Error on
/// an unknown variant or knob, a repeated knob, or a value the knob does not allow.
Schedule parse(Op op, const std::string& text);
/// The variant with every knob at its default.
Schedule with_defaults(Op op, const std::string& variant);

/// What a schedule is judged against: cheap facts about the operands, no measurement.
struct Problem {
  Op op = Op::spmm;
  Format format = Format::csr;
  MemorySpace space = MemorySpace::device;
  DType value = DType::f32;
  DType index = DType::i32;
  int64_t rows = 0, cols = 0, nnz = 0;
  int64_t features = 0;          // F
  int64_t ld_b = 0, ld_c = 0;    // leading dimensions (elements) of the dense operands
  // The widest vector (elements, a power of two up to 8) that both dense operands' first elements
  // are aligned to: vector_alignment() of their base pointers. A view into a wider matrix may
  // start off a 16-byte boundary; its rows then take narrower loads.
  int64_t operand_align = 8;
  double mean_row_length = 0;    // nnz / rows
  int64_t max_row_length = -1;  // -1: unknown (describe() leaves it so; ops measure device A once)
  bool deterministic = false;   // the caller requires the same bits on every run
  int64_t block_rows = 1, block_cols = 1;  // BSR block shape
};

/// The largest k in {1, 2, 4, 8} such that p is aligned to k elements of element_bytes each.
int64_t vector_alignment(const void* p, size_t element_bytes);

/// Builds a Problem from a CSR view and the dense operands' widths and leading dimensions.
template <class V, class I>
Problem describe(Op op, const CsrView<V, I>& a, int64_t features, int64_t ld_b, int64_t ld_c);

/// The same for the other device formats (nnz counts ELL slots; a Hybrid's parts are not read).
template <class V, class I>
Problem describe(Op op, const BsrView<V, I>& a, int64_t features, int64_t ld_b, int64_t ld_c);
template <class V, class I>
Problem describe(Op op, const CooView<V, I>& a, int64_t features, int64_t ld_b, int64_t ld_c);
template <class V, class I>
Problem describe(Op op, const EllView<V, I>& a, int64_t features, int64_t ld_b, int64_t ld_c);
template <class V, class I>
Problem describe(Op op, const Hybrid<V, I>& a, int64_t features, int64_t ld_b, int64_t ld_c);

struct Verdict {
  bool ok = true;
  std::string reason;  // why not, when !ok
  explicit operator bool() const { return ok; }
};

/// Whether s applies to p; the reason names the first rule broken.
Verdict can_implement(const Schedule& s, const Problem& p);

/// Every schedule of the op's registered variants (all knob combinations) that applies to p.
std::vector<Schedule> space(const Problem& p);

/// The default schedule from cheap statistics (F, rows, nnz, mean and longest row), without
/// measuring. SpMM on CSR: csr.row_split when no row is much longer than the mean and rows
/// average at least 3 nonzeros (a sub-warp per row, widened for small matrices), else
/// csr.merge_path with teams sized to fill the GPU. ELL and Hybrid: a sub-warp per row as
/// csr.row_split chooses it (Hybrid: the deterministic two-pass reduction). BSR:
/// bsr.tensor_core with 32 features a warp (64 for blocks over 16 rows at F >= 128, or when F
/// needs more than 65535 tiles of 32; bsr.cusparse for blocks over 32 x 64 that cuSPARSE
/// takes). SDDMM: csr.row_split for rows of at most 16 edges; on 16M+ nonzeros csr.edge_batch
/// (f32 at F <= 128, 16-bit at every F) or csr.edge_group in runs of 256; f32 rows of 16+ edges
/// and even length (FEM matrices) csr.row_batch; else csr.edge_group with small teams and runs
/// of about one row; COO: coo.edge_group with the same teams and runs.
Schedule default_schedule(const Problem& p);

}  // namespace tessera::schedule
