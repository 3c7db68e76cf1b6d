#include "formats/convert.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>
#include <vector>

#include "core/error.h"
#include "formats/validate.h"

namespace tessera {

namespace {

void require_host(MemorySpace s, const char* what) {
  TSR_CHECK(s == MemorySpace::host, what, ": conversions run on host data; copy with .to(host)");
}

// Exclusive prefix sum of counts[0..n) into offsets[0..n] (offsets[n] = total).
template <class I>
Buffer<I> offsets_from_counts(const std::vector<int64_t>& counts, const char* what) {
  Buffer<I> offsets(counts.size() + 1);
  int64_t total = 0;
  offsets[0] = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    total += counts[i];
    TSR_CHECK(fits_index<I>(total), what, ": ", total, " entries do not fit the index type",
              sizeof(I) == 4 ? "; use int64 indices" : "");
    offsets[i + 1] = I(total);
  }
  return offsets;
}

template <class V>
bool is_zero(V v) {
  return to_float(v) == 0;
}

}  // namespace

template <class V, class I>
Csr<V, I> coo_to_csr(const Coo<V, I>& coo) {
  require_host(coo.space(), "coo_to_csr");
  validate(coo.view());
  std::vector<int64_t> counts(coo.rows, 0);
  for (int64_t e = 0; e < coo.nnz(); ++e) ++counts[coo.row[e]];
  Csr<V, I> out{coo.rows, coo.cols, offsets_from_counts<I>(counts, "coo_to_csr"),
                Buffer<I>(coo.nnz()), Buffer<V>(coo.nnz())};
  std::vector<int64_t> cursor(out.indptr.begin(), out.indptr.end() - 1);
  for (int64_t e = 0; e < coo.nnz(); ++e) {  // stable: file order kept within each row
    const int64_t dst = cursor[coo.row[e]]++;
    out.indices[dst] = coo.col[e];
    out.values[dst] = coo.values[e];
  }
  return out;
}

template <class V, class I>
Coo<V, I> csr_to_coo(const Csr<V, I>& csr) {
  require_host(csr.space(), "csr_to_coo");
  Coo<V, I> out{csr.rows, csr.cols, Buffer<I>(csr.nnz()), Buffer<I>(csr.indices), Buffer<V>(csr.values)};
  for (int64_t r = 0; r < csr.rows; ++r) {
    for (I e = csr.indptr[r]; e < csr.indptr[r + 1]; ++e) out.row[e] = I(r);
  }
  return out;
}

// Stable counting sort of a compressed structure by its inner index: the transpose pattern.
template <class V, class I>
static void transpose_compressed(int64_t outer, int64_t inner, const Buffer<I>& indptr,
                                 const Buffer<I>& indices, const Buffer<V>& values,
                                 Buffer<I>& t_indptr, Buffer<I>& t_indices, Buffer<V>& t_values) {
  std::vector<int64_t> counts(inner, 0);
  for (size_t e = 0; e < indices.size(); ++e) ++counts[indices[e]];
  t_indptr = offsets_from_counts<I>(counts, "transpose");
  t_indices = Buffer<I>(indices.size());
  t_values = Buffer<V>(values.size());
  std::vector<int64_t> cursor(t_indptr.begin(), t_indptr.end() - 1);
  for (int64_t o = 0; o < outer; ++o) {
    for (I e = indptr[o]; e < indptr[o + 1]; ++e) {
      const int64_t dst = cursor[indices[e]]++;
      t_indices[dst] = I(o);
      t_values[dst] = values[e];
    }
  }
}

template <class V, class I>
Csc<V, I> csr_to_csc(const Csr<V, I>& csr) {
  require_host(csr.space(), "csr_to_csc");
  validate(csr.view());
  Csc<V, I> out{csr.rows, csr.cols, {}, {}, {}};
  transpose_compressed(csr.rows, csr.cols, csr.indptr, csr.indices, csr.values, out.indptr,
                       out.indices, out.values);
  return out;
}

template <class V, class I>
Csr<V, I> csc_to_csr(const Csc<V, I>& csc) {
  require_host(csc.space(), "csc_to_csr");
  validate(csc.view());
  Csr<V, I> out{csc.rows, csc.cols, {}, {}, {}};
  transpose_compressed(csc.cols, csc.rows, csc.indptr, csc.indices, csc.values, out.indptr,
                       out.indices, out.values);
  return out;
}

template <class V, class I>
Csr<V, I> transpose(const Csr<V, I>& csr) {
  Csc<V, I> csc = csr_to_csc(csr);
  return Csr<V, I>{csr.cols, csr.rows, std::move(csc.indptr), std::move(csc.indices),
                   std::move(csc.values)};
}

template <class V, class I>
Bsr<V, I> csr_to_bsr(const Csr<V, I>& csr, int64_t br, int64_t bc) {
  require_host(csr.space(), "csr_to_bsr");
  TSR_CHECK(br >= 1 && bc >= 1, "csr_to_bsr: block shape ", br, "x", bc, " must be at least 1x1");
  validate(csr.view());
  const int64_t block_row_count = (csr.rows + br - 1) / br;
  const int64_t block_col_count = (csr.cols + bc - 1) / bc;
  // Pass 1: the sorted distinct block columns of each block row.
  std::vector<int64_t> marker(block_col_count, -1);
  std::vector<std::vector<I>> row_blocks(block_row_count);
  for (int64_t b = 0; b < block_row_count; ++b) {
    for (int64_t r = b * br; r < std::min(csr.rows, (b + 1) * br); ++r) {
      for (I e = csr.indptr[r]; e < csr.indptr[r + 1]; ++e) {
        const int64_t j = csr.indices[e] / bc;
        if (marker[j] != b) {
          marker[j] = b;
          row_blocks[b].push_back(I(j));
        }
      }
    }
    std::sort(row_blocks[b].begin(), row_blocks[b].end());
  }
  std::vector<int64_t> counts(block_row_count);
  for (int64_t b = 0; b < block_row_count; ++b) counts[b] = int64_t(row_blocks[b].size());
  Bsr<V, I> out{csr.rows, csr.cols, br, bc, offsets_from_counts<I>(counts, "csr_to_bsr"), {}, {}};
  const int64_t num_blocks = out.indptr[block_row_count];
  check_index_capacity<I>(csr.rows, csr.cols, num_blocks, "csr_to_bsr");
  out.indices = Buffer<I>(num_blocks);
  out.values = Buffer<V>(size_t(num_blocks * br * bc), from_float<V>(0.0));
  // Pass 2: scatter values; marker maps a block column to its slot within the block row.
  std::fill(marker.begin(), marker.end(), -1);
  for (int64_t b = 0; b < block_row_count; ++b) {
    for (size_t k = 0; k < row_blocks[b].size(); ++k) {
      out.indices[out.indptr[b] + k] = row_blocks[b][k];
      marker[row_blocks[b][k]] = out.indptr[b] + int64_t(k);
    }
    for (int64_t r = b * br; r < std::min(csr.rows, (b + 1) * br); ++r) {
      for (I e = csr.indptr[r]; e < csr.indptr[r + 1]; ++e) {
        const int64_t j = csr.indices[e];
        V& slot = out.values[(marker[j / bc] * br + (r - b * br)) * bc + j % bc];
        slot = from_float<V>(double(to_float(slot)) + double(to_float(csr.values[e])));
      }
    }
  }
  return out;
}

template <class V, class I>
Csr<V, I> bsr_to_csr(const Bsr<V, I>& bsr) {
  require_host(bsr.space(), "bsr_to_csr");
  validate(bsr.view());
  const int64_t br = bsr.block_rows, bc = bsr.block_cols;
  // Visits the stored nonzeros of logical row r in column order (blocks sorted by column).
  auto for_row = [&](int64_t r, auto&& fn) {
    const int64_t b = r / br, local = r % br;
    for (I k = bsr.indptr[b]; k < bsr.indptr[b + 1]; ++k) {
      const int64_t col0 = int64_t(bsr.indices[k]) * bc;
      const V* block_row = bsr.values.data() + (int64_t(k) * br + local) * bc;
      for (int64_t c = 0; c < bc && col0 + c < bsr.cols; ++c) {
        if (!is_zero(block_row[c])) fn(col0 + c, block_row[c]);
      }
    }
  };
  std::vector<int64_t> counts(bsr.rows, 0);
  for (int64_t r = 0; r < bsr.rows; ++r) for_row(r, [&](int64_t, V) { ++counts[r]; });
  Csr<V, I> out{bsr.rows, bsr.cols, offsets_from_counts<I>(counts, "bsr_to_csr"), {}, {}};
  const int64_t nnz = out.indptr[bsr.rows];
  out.indices = Buffer<I>(nnz);
  out.values = Buffer<V>(nnz);
  for (int64_t r = 0; r < bsr.rows; ++r) {
    int64_t dst = out.indptr[r];
    for_row(r, [&](int64_t j, V v) {
      out.indices[dst] = I(j);
      out.values[dst++] = v;
    });
  }
  return out;
}

template <class V, class I>
Ell<V, I> csr_to_ell(const Csr<V, I>& csr, int64_t width) {
  require_host(csr.space(), "csr_to_ell");
  validate(csr.view());
  int64_t longest = 0;
  for (int64_t r = 0; r < csr.rows; ++r) longest = std::max<int64_t>(longest, csr.indptr[r + 1] - csr.indptr[r]);
  if (width < 0) width = longest;
  TSR_CHECK(longest <= width, "csr_to_ell: a row has ", longest, " entries, more than the width ",
            width, " (use a Hybrid format for long rows)");
  check_index_capacity<I>(csr.rows, csr.cols, csr.rows * width, "csr_to_ell");
  Ell<V, I> out{csr.rows, csr.cols, width, Buffer<I>(csr.rows * width, kPadIndex<I>),
                Buffer<V>(csr.rows * width, from_float<V>(0.0))};
  for (int64_t r = 0; r < csr.rows; ++r) {
    int64_t slot = r * width;
    for (I e = csr.indptr[r]; e < csr.indptr[r + 1]; ++e, ++slot) {
      out.indices[slot] = csr.indices[e];
      out.values[slot] = csr.values[e];
    }
  }
  return out;
}

template <class V, class I>
Csr<V, I> ell_to_csr(const Ell<V, I>& ell) {
  require_host(ell.space(), "ell_to_csr");
  validate(ell.view());
  std::vector<int64_t> counts(ell.rows, 0);
  for (int64_t r = 0; r < ell.rows; ++r) {
    for (int64_t k = 0; k < ell.width; ++k) counts[r] += ell.indices[r * ell.width + k] != kPadIndex<I>;
  }
  Csr<V, I> out{ell.rows, ell.cols, offsets_from_counts<I>(counts, "ell_to_csr"), {}, {}};
  const int64_t nnz = out.indptr[ell.rows];
  out.indices = Buffer<I>(nnz);
  out.values = Buffer<V>(nnz);
  int64_t dst = 0;
  for (int64_t s = 0; s < ell.rows * ell.width; ++s) {
    if (ell.indices[s] == kPadIndex<I>) continue;
    out.indices[dst] = ell.indices[s];
    out.values[dst++] = ell.values[s];
  }
  return out;
}

template <class V, class I>
RaggedMatrix<V, I> csr_to_ragged(const Csr<V, I>& csr) {
  require_host(csr.space(), "csr_to_ragged");
  validate(csr.view());
  RaggedMatrix<V, I> out{csr.rows, csr.cols, {}};
  out.data.levels.push_back(Buffer<I>(csr.indptr));
  out.data.values = Buffer<SparseEntry<V, I>>(csr.nnz());
  for (int64_t e = 0; e < csr.nnz(); ++e) out.data.values[e] = {csr.indices[e], csr.values[e]};
  return out;
}

template <class V, class I>
Csr<V, I> ragged_to_csr(const RaggedMatrix<V, I>& r) {
  validate(r);
  Csr<V, I> out{r.rows, r.cols, Buffer<I>(r.data.levels[0]), Buffer<I>(r.nnz()), Buffer<V>(r.nnz())};
  for (int64_t e = 0; e < r.nnz(); ++e) {
    out.indices[e] = r.data.values[e].col;
    out.values[e] = r.data.values[e].value;
  }
  return out;
}

template <class V, class I>
Hybrid<V, I> csr_to_hybrid(const Csr<V, I>& csr, const HybParams& p) {
  require_host(csr.space(), "csr_to_hybrid");
  TSR_CHECK(p.column_parts >= 1, "csr_to_hybrid: column_parts = ", p.column_parts, " must be >= 1");
  TSR_CHECK(p.max_width_log2 >= 0 && p.max_width_log2 <= 20, "csr_to_hybrid: max_width_log2 = ",
            p.max_width_log2, " must be in [0, 20]");
  validate(csr.view());
  const int64_t c = std::max<int64_t>(1, std::min(p.column_parts, std::max<int64_t>(csr.cols, 1)));
  const int k = p.max_width_log2;
  const int64_t widest = int64_t(1) << k;
  // Column range q is [bounds[q], bounds[q + 1]).
  std::vector<int64_t> bounds(c + 1);
  for (int64_t q = 0; q <= c; ++q) bounds[q] = q * csr.cols / c;
  auto range_of = [&](int64_t j) {
    int64_t q = j * c / std::max<int64_t>(csr.cols, 1);
    while (j < bounds[q]) --q;
    while (j >= bounds[q + 1]) ++q;
    return q;
  };
  Hybrid<V, I> out{csr.rows, csr.cols, {}};
  std::vector<int64_t> len(csr.rows);
  for (int64_t q = 0; q < c; ++q) {
    // Entries of each row that fall in range q, in row order.
    std::fill(len.begin(), len.end(), 0);
    for (int64_t r = 0; r < csr.rows; ++r) {
      for (I e = csr.indptr[r]; e < csr.indptr[r + 1]; ++e) len[r] += range_of(csr.indices[e]) == q;
    }
    for (int b = 0; b <= k; ++b) {
      const int64_t width = int64_t(1) << b;
      // Rows whose length bucket is b: width/2 < len <= width, or len > widest for the last.
      std::vector<I> row_map;
      for (int64_t r = 0; r < csr.rows; ++r) {
        const int64_t L = len[r];
        if (L == 0) continue;
        const bool in_bucket = (b == k) ? L > widest / 2 : (L > width / 2 && L <= width);
        if (!in_bucket) continue;
        const int64_t pieces = (L + width - 1) / width;
        for (int64_t s = 0; s < pieces; ++s) row_map.push_back(I(r));
      }
      if (row_map.empty()) continue;
      const int64_t part_rows = int64_t(row_map.size());
      check_index_capacity<I>(part_rows, csr.cols, part_rows * width, "csr_to_hybrid");
      Ell<V, I> ell{part_rows, csr.cols, width, Buffer<I>(part_rows * width, kPadIndex<I>),
                    Buffer<V>(part_rows * width, from_float<V>(0.0))};
      for (int64_t i = 0; i < part_rows;) {
        const int64_t r = row_map[i];
        int64_t local = i * width;  // the row's pieces are consecutive local rows
        for (I e = csr.indptr[r]; e < csr.indptr[r + 1]; ++e) {
          if (range_of(csr.indices[e]) != q) continue;
          ell.indices[local] = csr.indices[e];
          ell.values[local++] = csr.values[e];
        }
        i += (len[r] + width - 1) / width;
      }
      HybridPart<V, I> part;
      part.col_begin = bounds[q];
      part.col_end = bounds[q + 1];
      part.row_map = Buffer<I>(row_map);
      part.matrix = std::move(ell);
      out.parts.push_back(std::move(part));
    }
  }
  return out;
}

template <class V, class I>
Csr<V, I> hybrid_to_csr(const Hybrid<V, I>& h) {
  validate(h);
  // Parts in order of column range, then of their position (stable).
  std::vector<size_t> order(h.parts.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return h.parts[a].col_begin < h.parts[b].col_begin;
  });
  // Visits each stored entry of a part as (local row, column, value).
  auto for_entries = [](const HybridPart<V, I>& part, auto&& fn) {
    if (const auto* csr = std::get_if<Csr<V, I>>(&part.matrix)) {
      for (int64_t r = 0; r < csr->rows; ++r) {
        for (I e = csr->indptr[r]; e < csr->indptr[r + 1]; ++e) fn(r, csr->indices[e], csr->values[e]);
      }
    } else {
      const auto& ell = std::get<Ell<V, I>>(part.matrix);
      for (int64_t s = 0; s < ell.rows * ell.width; ++s) {
        if (ell.indices[s] != kPadIndex<I>) fn(s / ell.width, ell.indices[s], ell.values[s]);
      }
    }
  };
  std::vector<int64_t> counts(h.rows, 0);
  for (const auto& part : h.parts) {
    for_entries(part, [&](int64_t r, I, V) { ++counts[part.row_map[r]]; });
  }
  Csr<V, I> out{h.rows, h.cols, offsets_from_counts<I>(counts, "hybrid_to_csr"), {}, {}};
  const int64_t nnz = out.indptr[h.rows];
  out.indices = Buffer<I>(nnz);
  out.values = Buffer<V>(nnz);
  std::vector<int64_t> cursor(out.indptr.begin(), out.indptr.end() - 1);
  for (size_t p : order) {
    const auto& part = h.parts[p];
    for_entries(part, [&](int64_t r, I j, V v) {
      const int64_t dst = cursor[part.row_map[r]]++;
      out.indices[dst] = j;
      out.values[dst] = v;
    });
  }
  return out;
}

template <class V, class I>
Csr<V, I> canonicalize(const Csr<V, I>& csr) {
  require_host(csr.space(), "canonicalize");
  validate(csr.view());
  std::vector<std::pair<I, double>> row;
  std::vector<int64_t> counts(csr.rows, 0);
  std::vector<I> cols;
  std::vector<V> vals;
  cols.reserve(csr.nnz());
  vals.reserve(csr.nnz());
  for (int64_t r = 0; r < csr.rows; ++r) {
    row.clear();
    for (I e = csr.indptr[r]; e < csr.indptr[r + 1]; ++e) {
      row.emplace_back(csr.indices[e], double(to_float(csr.values[e])));
    }
    std::stable_sort(row.begin(), row.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (size_t k = 0; k < row.size();) {  // each run of one column: summed in double, rounded once
      double sum = 0;
      size_t end = k;
      for (; end < row.size() && row[end].first == row[k].first; ++end) sum += row[end].second;
      const V v = from_float<V>(sum);
      TSR_CHECK(!std::isfinite(sum) || std::isfinite(double(to_float(v))), "canonicalize: the ",
                end - k, " entries at row ", r, ", column ", row[k].first, " sum to ", sum,
                ", which overflows ", dtype_name(dtype_of<V>()));
      cols.push_back(row[k].first);
      vals.push_back(v);
      ++counts[r];
      k = end;
    }
  }
  return Csr<V, I>{csr.rows, csr.cols, offsets_from_counts<I>(counts, "canonicalize"),
                   Buffer<I>(cols), Buffer<V>(vals)};
}

template <class W, class V, class I>
Csr<W, I> cast_values(const Csr<V, I>& csr) {
  require_host(csr.space(), "cast_values");
  Csr<W, I> out{csr.rows, csr.cols, csr.indptr, csr.indices, Buffer<W>(csr.nnz())};
  for (int64_t e = 0; e < csr.nnz(); ++e) out.values[e] = from_float<W>(double(to_float(csr.values[e])));
  return out;
}

template <class J, class V, class I>
Csr<V, J> cast_indices(const Csr<V, I>& csr) {
  require_host(csr.space(), "cast_indices");
  check_index_capacity<J>(csr.rows, csr.cols, csr.nnz(), "cast_indices");
  Csr<V, J> out{csr.rows, csr.cols, Buffer<J>(csr.indptr.size()), Buffer<J>(csr.indices.size()),
                csr.values};
  for (size_t i = 0; i < csr.indptr.size(); ++i) out.indptr[i] = J(csr.indptr[i]);
  for (size_t i = 0; i < csr.indices.size(); ++i) out.indices[i] = J(csr.indices[i]);
  return out;
}

template <class V, class I>
AnySparse<V, I> from_csr(const Csr<V, I>& csr, Format f, const ConvertParams& p) {
  switch (f) {
    case Format::coo: return csr_to_coo(csr);
    case Format::csr: return csr;
    case Format::csc: return csr_to_csc(csr);
    case Format::bsr: return csr_to_bsr(csr, p.block_rows, p.block_cols);
    case Format::ell: return csr_to_ell(csr, p.ell_width);
    case Format::ragged: return csr_to_ragged(csr);
    case Format::hybrid: return csr_to_hybrid(csr, p.hyb);
  }
  TSR_FAIL("from_csr: unknown format");
}

template <class V, class I>
Csr<V, I> to_csr(const AnySparse<V, I>& m) {
  switch (format_of(m)) {
    case Format::coo: return coo_to_csr(std::get<Coo<V, I>>(m));
    case Format::csr: return std::get<Csr<V, I>>(m);
    case Format::csc: return csc_to_csr(std::get<Csc<V, I>>(m));
    case Format::bsr: return bsr_to_csr(std::get<Bsr<V, I>>(m));
    case Format::ell: return ell_to_csr(std::get<Ell<V, I>>(m));
    case Format::ragged: return ragged_to_csr(std::get<RaggedMatrix<V, I>>(m));
    case Format::hybrid: return hybrid_to_csr(std::get<Hybrid<V, I>>(m));
  }
  TSR_FAIL("to_csr: unknown format");
}

#define TSR_INSTANTIATE_CONVERT(V, I)                                                        \
  template Csr<V, I> coo_to_csr(const Coo<V, I>&);                                           \
  template Coo<V, I> csr_to_coo(const Csr<V, I>&);                                           \
  template Csc<V, I> csr_to_csc(const Csr<V, I>&);                                           \
  template Csr<V, I> csc_to_csr(const Csc<V, I>&);                                           \
  template Bsr<V, I> csr_to_bsr(const Csr<V, I>&, int64_t, int64_t);                         \
  template Csr<V, I> bsr_to_csr(const Bsr<V, I>&);                                           \
  template Ell<V, I> csr_to_ell(const Csr<V, I>&, int64_t);                                  \
  template Csr<V, I> ell_to_csr(const Ell<V, I>&);                                           \
  template RaggedMatrix<V, I> csr_to_ragged(const Csr<V, I>&);                               \
  template Csr<V, I> ragged_to_csr(const RaggedMatrix<V, I>&);                               \
  template Hybrid<V, I> csr_to_hybrid(const Csr<V, I>&, const HybParams&);                   \
  template Csr<V, I> hybrid_to_csr(const Hybrid<V, I>&);                                     \
  template Csr<V, I> canonicalize(const Csr<V, I>&);                                         \
  template Csr<V, I> transpose(const Csr<V, I>&);                                            \
  template AnySparse<V, I> from_csr(const Csr<V, I>&, Format, const ConvertParams&);         \
  template Csr<V, I> to_csr(const AnySparse<V, I>&);                                         \
  template Csr<float, I> cast_values<float>(const Csr<V, I>&);                               \
  template Csr<double, I> cast_values<double>(const Csr<V, I>&);                             \
  template Csr<bf16, I> cast_values<bf16>(const Csr<V, I>&);                                 \
  template Csr<f16, I> cast_values<f16>(const Csr<V, I>&);
TSR_FOR_EACH_STORAGE_TYPE(TSR_INSTANTIATE_CONVERT)

#define TSR_INSTANTIATE_CAST_INDICES(V, I) \
  template Csr<V, int32_t> cast_indices<int32_t>(const Csr<V, I>&); \
  template Csr<V, int64_t> cast_indices<int64_t>(const Csr<V, I>&);
TSR_FOR_EACH_STORAGE_TYPE(TSR_INSTANTIATE_CAST_INDICES)

}  // namespace tessera
