#include "formats/validate.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"

namespace tessera {

namespace {

template <class V>
bool is_finite_value(V v) {
  return std::isfinite(double(to_float(v)));
}

template <class I>
const char* index_name() {
  return sizeof(I) == 4 ? "int32" : "int64";
}

void require_host(MemorySpace s, const char* what) {
  TSR_CHECK(s == MemorySpace::host, what, ": validate() needs host arrays (got device memory)");
}

// Checks offsets[0..n] are 0, monotone, and end at expected; `what` names the array.
template <class I>
void check_offsets(const I* offsets, int64_t n, int64_t expected, const char* what) {
  TSR_CHECK(offsets != nullptr, what, ": offsets array is null");
  TSR_CHECK(offsets[0] == 0, what, "[0] = ", int64_t(offsets[0]), ", expected 0");
  for (int64_t i = 0; i < n; ++i) {
    TSR_CHECK(offsets[i + 1] >= offsets[i], what, " is not monotone: [", i, "] = ",
              int64_t(offsets[i]), " > [", i + 1, "] = ", int64_t(offsets[i + 1]));
  }
  TSR_CHECK(int64_t(offsets[n]) == expected, what, "[", n, "] = ", int64_t(offsets[n]),
            " does not match the entry count ", expected);
}

// True when segment s (offsets already checked) keeps every rule of o.
template <class V, class I>
bool segment_ok(int64_t s, int64_t extent, const I* indptr, const I* indices, const V* values,
                const ValidateOptions& o, std::vector<I>& scratch) {
  const int64_t begin = indptr[s], end = indptr[s + 1];
  bool ok = true;
  for (int64_t e = begin; e < end; ++e) {
    const int64_t j = indices[e];
    ok &= j >= 0 && j < extent;
    if (o.require_sorted && e > begin) {
      ok &= indices[e - 1] <= j;
      ok &= !o.require_unique || indices[e - 1] != j;
    }
    if (o.require_finite) ok &= is_finite_value(values[e]);
  }
  if (ok && o.require_unique && !o.require_sorted) {
    scratch.assign(indices + begin, indices + end);
    std::sort(scratch.begin(), scratch.end());
    ok = std::adjacent_find(scratch.begin(), scratch.end()) == scratch.end();
  }
  return ok;
}

// Checks the compressed arrays of a CSR/CSC-like structure: indices of each segment in
// [0, extent), optionally sorted/unique, values optionally finite.
template <class V, class I>
void check_compressed(int64_t segments, int64_t extent, int64_t nnz, const I* indptr,
                      const I* indices, const V* values, const ValidateOptions& o,
                      const char* fmt, const char* seg_name, const char* idx_name) {
  TSR_CHECK(nnz == 0 || (indices && values), fmt, ": null indices or values with nnz = ", nnz);
  check_offsets(indptr, segments, nnz, (std::string(fmt) + ".indptr").c_str());
  // Parallel pass: the first segment that breaks a rule (no exception inside the region). The
  // serial pass below starts there and throws with the full message.
  int64_t first_bad = segments;
#pragma omp parallel reduction(min : first_bad)
  {
    std::vector<I> scratch;
#pragma omp for schedule(static)
    for (int64_t s = 0; s < segments; ++s) {
      if (!segment_ok(s, extent, indptr, indices, values, o, scratch)) first_bad = std::min(first_bad, s);
    }
  }
  for (int64_t s = first_bad; s < segments; ++s) {
    for (int64_t e = indptr[s]; e < indptr[s + 1]; ++e) {
      const int64_t j = indices[e];
      TSR_CHECK(j >= 0 && j < extent, fmt, ".indices[", e, "] = ", j, " is outside [0, ", extent,
                ") (", seg_name, " ", s, ")");
      if (e > indptr[s]) {
        const int64_t prev = indices[e - 1];
        TSR_CHECK(!o.require_sorted || prev <= j, fmt, ": ", seg_name, " ", s, " is not sorted (",
                  idx_name, " ", prev, " before ", j, " at entry ", e, ")");
        TSR_CHECK(!(o.require_unique && o.require_sorted) || prev != j, fmt, ": ", seg_name, " ",
                  s, " repeats ", idx_name, " ", j, " at entry ", e);
      }
      TSR_CHECK(!o.require_finite || is_finite_value(values[e]), fmt, ".values[", e,
                "] is not finite (", double(to_float(values[e])), ")");
    }
    if (o.require_unique && !o.require_sorted) {
      std::vector<I> seg(indices + indptr[s], indices + indptr[s + 1]);
      std::sort(seg.begin(), seg.end());
      for (size_t k = 1; k < seg.size(); ++k) {
        TSR_CHECK(seg[k] != seg[k - 1], fmt, ": ", seg_name, " ", s, " repeats ", idx_name, " ",
                  int64_t(seg[k]));
      }
    }
  }
}

}  // namespace

template <class I>
void check_index_capacity(int64_t rows, int64_t cols, int64_t nnz, const char* what) {
  TSR_CHECK(rows >= 0 && cols >= 0 && nnz >= 0, what, ": negative size (rows ", rows, ", cols ",
            cols, ", nnz ", nnz, ")");
  const char* which = !fits_index<I>(rows) ? "rows" : !fits_index<I>(cols) ? "cols" : "nnz";
  const int64_t value = !fits_index<I>(rows) ? rows : !fits_index<I>(cols) ? cols : nnz;
  TSR_CHECK(fits_index<I>(rows) && fits_index<I>(cols) && fits_index<I>(nnz), what, ": ", which,
            " = ", value, " does not fit the ", index_name<I>(), " index type",
            sizeof(I) == 4 ? "; use int64 indices" : "");
}

template <class V, class I>
void validate(const CooView<V, I>& m, const ValidateOptions& o) {
  require_host(m.space, "Coo");
  check_index_capacity<I>(m.rows, m.cols, m.nnz, "Coo");
  TSR_CHECK(m.nnz == 0 || (m.row && m.col && m.values), "Coo: null arrays with nnz = ", m.nnz);
  for (int64_t e = 0; e < m.nnz; ++e) {
    TSR_CHECK(m.row[e] >= 0 && m.row[e] < m.rows, "Coo.row[", e, "] = ", int64_t(m.row[e]),
              " is outside [0, ", m.rows, ")");
    TSR_CHECK(m.col[e] >= 0 && m.col[e] < m.cols, "Coo.col[", e, "] = ", int64_t(m.col[e]),
              " is outside [0, ", m.cols, ")");
    if (o.require_sorted && e > 0) {
      const bool ordered = m.row[e - 1] < m.row[e] ||
                           (m.row[e - 1] == m.row[e] && m.col[e - 1] <= m.col[e]);
      TSR_CHECK(ordered, "Coo: entry ", e, " is not in row-major order");
      TSR_CHECK(!o.require_unique || m.row[e - 1] != m.row[e] || m.col[e - 1] != m.col[e],
                "Coo: entry ", e, " repeats (", int64_t(m.row[e]), ", ", int64_t(m.col[e]), ")");
    }
    TSR_CHECK(!o.require_finite || is_finite_value(m.values[e]), "Coo.values[", e,
              "] is not finite");
  }
}

template <class V, class I>
void validate(const CsrView<V, I>& m, const ValidateOptions& o) {
  require_host(m.space, "Csr");
  check_index_capacity<I>(m.rows, m.cols, m.nnz, "Csr");
  check_compressed(m.rows, m.cols, m.nnz, m.indptr, m.indices, m.values, o, "Csr", "row",
                   "column");
}

template <class V, class I>
void validate(const CscView<V, I>& m, const ValidateOptions& o) {
  require_host(m.space, "Csc");
  check_index_capacity<I>(m.rows, m.cols, m.nnz, "Csc");
  check_compressed(m.cols, m.rows, m.nnz, m.indptr, m.indices, m.values, o, "Csc", "column",
                   "row");
}

template <class V, class I>
void validate(const BsrView<V, I>& m, const ValidateOptions& o) {
  require_host(m.space, "Bsr");
  TSR_CHECK(m.block_rows >= 1 && m.block_cols >= 1, "Bsr: block shape ", m.block_rows, "x",
            m.block_cols, " must be at least 1x1");
  const int64_t slots = m.num_blocks * m.block_rows * m.block_cols;
  check_index_capacity<I>(m.rows, m.cols, m.num_blocks, "Bsr");
  const int64_t block_cols = (m.cols + m.block_cols - 1) / m.block_cols;
  check_compressed(m.block_row_count(), block_cols, m.num_blocks, m.indptr, m.indices, m.values,
                   ValidateOptions{o.require_sorted, o.require_unique, false}, "Bsr", "block row",
                   "block column");
  TSR_CHECK(slots == 0 || m.values, "Bsr: null values");
  if (o.require_finite) {
    for (int64_t e = 0; e < slots; ++e) {
      TSR_CHECK(is_finite_value(m.values[e]), "Bsr.values[", e, "] is not finite");
    }
  }
}

template <class V, class I>
void validate(const EllView<V, I>& m, const ValidateOptions& o) {
  require_host(m.space, "Ell");
  TSR_CHECK(m.width >= 0, "Ell: negative width ", m.width);
  const int64_t slots = m.rows * m.width;
  check_index_capacity<I>(m.rows, m.cols, slots, "Ell");
  TSR_CHECK(slots == 0 || (m.indices && m.values), "Ell: null arrays for ", slots, " slots");
  for (int64_t r = 0; r < m.rows; ++r) {
    int64_t prev = -1;
    for (int64_t k = 0; k < m.width; ++k) {
      const int64_t e = r * m.width + k;
      const int64_t j = m.indices[e];
      if (j == int64_t(kPadIndex<I>)) {
        TSR_CHECK(to_float(m.values[e]) == 0, "Ell.values[", e, "] is a padding slot (row ", r,
                  ") but holds ", double(to_float(m.values[e])), "; padding must be zero");
        continue;
      }
      TSR_CHECK(j >= 0 && j < m.cols, "Ell.indices[", e, "] = ", j, " is outside [0, ", m.cols,
                ") (row ", r, ")");
      TSR_CHECK(!o.require_sorted || j >= prev, "Ell: row ", r, " is not sorted at slot ", k);
      TSR_CHECK(!(o.require_sorted && o.require_unique) || j != prev, "Ell: row ", r,
                " repeats column ", j);
      TSR_CHECK(!o.require_finite || is_finite_value(m.values[e]), "Ell.values[", e,
                "] is not finite");
      prev = j;
    }
  }
}

template <class T, class I>
void validate_ragged(const Ragged<T, I>& r, const char* what) {
  require_host(r.space(), what);
  for (size_t l = 0; l < r.levels.size(); ++l) {
    const Buffer<I>& off = r.levels[l];
    TSR_CHECK(off.on_host(), what, ": level ", l, " offsets are not on the host");
    TSR_CHECK(off.size() >= 1, what, ": level ", l, " has no offsets (needs at least {0})");
    const int64_t next = l + 1 < r.levels.size() ? int64_t(r.levels[l + 1].size()) - 1
                                                 : int64_t(r.values.size());
    const std::string name = std::string(what) + ".levels[" + std::to_string(l) + "]";
    check_offsets(off.data(), int64_t(off.size()) - 1, next, name.c_str());
  }
  TSR_CHECK(!r.levels.empty() || r.values.empty(), what, ": values without offsets");
}

template <class V, class I>
void validate(const RaggedMatrix<V, I>& m, const ValidateOptions& o) {
  validate_ragged(m.data, "Ragged");
  TSR_CHECK(m.data.levels.size() == 1, "Ragged matrix: expected 1 offset level, got ",
            m.data.levels.size());
  TSR_CHECK(m.data.segments() == m.rows, "Ragged matrix: ", m.data.segments(),
            " segments for ", m.rows, " rows");
  check_index_capacity<I>(m.rows, m.cols, m.nnz(), "Ragged");
  const I* offsets = m.data.levels[0].data();
  const SparseEntry<V, I>* e = m.data.values.data();
  for (int64_t r = 0; r < m.rows; ++r) {
    for (int64_t k = offsets[r]; k < offsets[r + 1]; ++k) {
      TSR_CHECK(e[k].col >= 0 && e[k].col < m.cols, "Ragged.values[", k, "].col = ",
                int64_t(e[k].col), " is outside [0, ", m.cols, ") (row ", r, ")");
      TSR_CHECK(!o.require_sorted || k == offsets[r] || e[k - 1].col <= e[k].col, "Ragged: row ",
                r, " is not sorted at entry ", k);
      TSR_CHECK(!o.require_finite || is_finite_value(e[k].value), "Ragged.values[", k,
                "].value is not finite");
    }
  }
}

template <class V, class I>
void validate(const Hybrid<V, I>& m, const ValidateOptions& o) {
  check_index_capacity<I>(m.rows, m.cols, 0, "Hybrid");
  for (size_t p = 0; p < m.parts.size(); ++p) {
    const HybridPart<V, I>& part = m.parts[p];
    TSR_CHECK(0 <= part.col_begin && part.col_begin <= part.col_end && part.col_end <= m.cols,
              "Hybrid.parts[", p, "]: column range [", part.col_begin, ", ", part.col_end,
              ") is not inside [0, ", m.cols, ")");
    require_host(part.row_map.space(), "Hybrid.row_map");
    for (int64_t r = 0; r < part.part_rows(); ++r) {
      TSR_CHECK(part.row_map[r] >= 0 && part.row_map[r] < m.rows, "Hybrid.parts[", p,
                "].row_map[", r, "] = ", int64_t(part.row_map[r]), " is outside [0, ", m.rows, ")");
    }
    // Each part is a local-rows x global-cols matrix whose columns stay inside its range.
    std::visit(
        [&](const auto& mat) {
          TSR_CHECK(mat.rows == part.part_rows() && mat.cols == m.cols, "Hybrid.parts[", p,
                    "]: shape ", mat.rows, "x", mat.cols, " does not match ", part.part_rows(),
                    " mapped rows x ", m.cols, " columns");
          validate(mat.view(), o);
        },
        part.matrix);
    const auto in_range = [&](int64_t j) { return j >= part.col_begin && j < part.col_end; };
    if (const auto* csr = std::get_if<Csr<V, I>>(&part.matrix)) {
      for (int64_t e = 0; e < csr->nnz(); ++e) {
        TSR_CHECK(in_range(csr->indices[e]), "Hybrid.parts[", p, "]: column ",
                  int64_t(csr->indices[e]), " is outside the part's range");
      }
    } else {
      const auto& ell = std::get<Ell<V, I>>(part.matrix);
      for (size_t e = 0; e < ell.indices.size(); ++e) {
        TSR_CHECK(ell.indices[e] == kPadIndex<I> || in_range(ell.indices[e]), "Hybrid.parts[", p,
                  "]: column ", int64_t(ell.indices[e]), " is outside the part's range");
      }
    }
  }
}

#define TSR_INSTANTIATE_VALIDATE(V, I)                                                     \
  template void validate(const CooView<V, I>&, const ValidateOptions&);                    \
  template void validate(const CsrView<V, I>&, const ValidateOptions&);                    \
  template void validate(const CscView<V, I>&, const ValidateOptions&);                    \
  template void validate(const BsrView<V, I>&, const ValidateOptions&);                    \
  template void validate(const EllView<V, I>&, const ValidateOptions&);                    \
  template void validate(const RaggedMatrix<V, I>&, const ValidateOptions&);               \
  template void validate(const Hybrid<V, I>&, const ValidateOptions&);                     \
  template void validate_ragged(const Ragged<SparseEntry<V, I>, I>&, const char*);
TSR_FOR_EACH_STORAGE_TYPE(TSR_INSTANTIATE_VALIDATE)
template void check_index_capacity<int32_t>(int64_t, int64_t, int64_t, const char*);
template void check_index_capacity<int64_t>(int64_t, int64_t, int64_t, const char*);
template void validate_ragged(const Ragged<int32_t, int32_t>&, const char*);
template void validate_ragged(const Ragged<int64_t, int64_t>&, const char*);
template void validate_ragged(const Ragged<float, int32_t>&, const char*);
template void validate_ragged(const Ragged<float, int64_t>&, const char*);

}  // namespace tessera
