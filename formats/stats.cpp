#include "formats/stats.h"

#include <cmath>
#include <iomanip>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace tessera {

template <class V, class I>
RowLengthStats row_length_stats(const CsrView<V, I>& csr) {
  TSR_CHECK(csr.space == MemorySpace::host, "row_length_stats needs a host matrix");
  RowLengthStats s;
  if (csr.rows == 0) return s;
  s.min = INT64_MAX;
  double sum = 0, sum_sq = 0;
  for (int64_t r = 0; r < csr.rows; ++r) {
    const int64_t len = csr.indptr[r + 1] - csr.indptr[r];
    s.min = std::min(s.min, len);
    s.max = std::max(s.max, len);
    s.empty_rows += len == 0;
    sum += double(len);
    sum_sq += double(len) * double(len);
  }
  s.mean = sum / double(csr.rows);
  s.stddev = std::sqrt(std::max(0.0, sum_sq / double(csr.rows) - s.mean * s.mean));
  return s;
}

namespace {

template <class V, class I>
void add_row_lengths(FormatStats& st, const CsrView<V, I>& csr) {
  const RowLengthStats rl = row_length_stats(csr);
  st.details.push_back({"row_len_min", double(rl.min)});
  st.details.push_back({"row_len_max", double(rl.max)});
  st.details.push_back({"row_len_mean", rl.mean});
  st.details.push_back({"row_len_stddev", rl.stddev});
  st.details.push_back({"empty_rows", double(rl.empty_rows)});
}

template <class V, class I>
int64_t ell_filled(const Ell<V, I>& ell) {
  int64_t n = 0;
  for (size_t s = 0; s < ell.indices.size(); ++s) n += ell.indices[s] != kPadIndex<I>;
  return n;
}

void finish(FormatStats& st) {
  st.padding_ratio = st.stored > 0 ? double(st.stored - st.nnz) / double(st.stored) : 0.0;
}

}  // namespace

template <class V, class I>
FormatStats format_stats(const AnySparse<V, I>& m) {
  FormatStats st;
  st.format = format_name(format_of(m));
  const size_t vi = sizeof(V), ii = sizeof(I);
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        st.rows = x.rows;
        st.cols = x.cols;
        if constexpr (std::is_same_v<T, Coo<V, I>>) {
          st.nnz = st.stored = x.nnz();
          st.bytes = size_t(x.nnz()) * (vi + 2 * ii);
        } else if constexpr (std::is_same_v<T, Csr<V, I>>) {
          st.nnz = st.stored = x.nnz();
          st.bytes = size_t(x.nnz()) * (vi + ii) + x.indptr.size() * ii;
          add_row_lengths(st, x.view());
        } else if constexpr (std::is_same_v<T, Csc<V, I>>) {
          st.nnz = st.stored = x.nnz();
          st.bytes = size_t(x.nnz()) * (vi + ii) + x.indptr.size() * ii;
        } else if constexpr (std::is_same_v<T, Bsr<V, I>>) {
          st.stored = x.num_blocks() * x.block_rows * x.block_cols;
          for (size_t s = 0; s < x.values.size(); ++s) st.nnz += to_float(x.values[s]) != 0;
          st.bytes = x.values.size() * vi + (x.indices.size() + x.indptr.size()) * ii;
          st.details.push_back({"block_rows", double(x.block_rows)});
          st.details.push_back({"block_cols", double(x.block_cols)});
          st.details.push_back({"blocks", double(x.num_blocks())});
          st.details.push_back({"block_fill", st.stored ? double(st.nnz) / double(st.stored) : 0.0});
        } else if constexpr (std::is_same_v<T, Ell<V, I>>) {
          st.stored = x.rows * x.width;
          st.nnz = ell_filled(x);
          st.bytes = size_t(st.stored) * (vi + ii);
          st.details.push_back({"width", double(x.width)});
        } else if constexpr (std::is_same_v<T, RaggedMatrix<V, I>>) {
          st.nnz = st.stored = x.nnz();
          st.bytes = x.data.values.size() * sizeof(SparseEntry<V, I>) + (x.rows + 1) * ii;
        } else {  // Hybrid
          st.details.push_back({"parts", double(x.parts.size())});
          for (size_t p = 0; p < x.parts.size(); ++p) {
            const auto& part = x.parts[p];
            int64_t filled = 0, slots = 0;
            std::string label;
            if (const auto* ell = std::get_if<Ell<V, I>>(&part.matrix)) {
              filled = ell_filled(*ell);
              slots = ell->rows * ell->width;
              label = "ell_w" + std::to_string(ell->width);
            } else {
              const auto& csr = std::get<Csr<V, I>>(part.matrix);
              filled = slots = csr.nnz();
              label = "csr";
            }
            st.nnz += filled;
            st.stored += slots;
            st.bytes += size_t(slots) * (vi + ii) + part.row_map.size() * ii;
            const std::string key = "part" + std::to_string(p) + "[cols " +
                                    std::to_string(part.col_begin) + ":" +
                                    std::to_string(part.col_end) + " " + label + "]";
            st.details.push_back({key + ".rows", double(part.part_rows())});
            st.details.push_back({key + ".occupancy", slots ? double(filled) / double(slots) : 0.0});
          }
        }
      },
      m);
  finish(st);
  return st;
}

std::string FormatStats::to_string() const {
  std::ostringstream os;
  os << std::setprecision(4);
  os << "format " << format << ": " << rows << " x " << cols << ", nnz " << nnz << ", stored "
     << stored << ", padding " << 100.0 * padding_ratio << "%, " << bytes << " bytes\n";
  for (const auto& [k, v] : details) os << "  " << k << " = " << v << "\n";
  return os.str();
}

std::string FormatStats::to_json() const {
  nlohmann::ordered_json j;
  j["format"] = format;
  j["rows"] = rows;
  j["cols"] = cols;
  j["nnz"] = nnz;
  j["stored"] = stored;
  j["padding_ratio"] = padding_ratio;
  j["bytes"] = bytes;
  for (const auto& [k, v] : details) j["details"][k] = v;
  return j.dump();
}

#define TSR_INSTANTIATE_STATS(V, I)                                   \
  template FormatStats format_stats(const AnySparse<V, I>&);          \
  template RowLengthStats row_length_stats(const CsrView<V, I>&);
TSR_FOR_EACH_STORAGE_TYPE(TSR_INSTANTIATE_STATS)

}  // namespace tessera
