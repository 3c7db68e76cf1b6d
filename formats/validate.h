// validate(): structural checks every public entry point runs on user-supplied arrays. A failure
// throws tessera::Error naming the array, the position and the rule broken.
#pragma once

#include "formats/sparse.h"

namespace tessera {

struct ValidateOptions {
  bool require_sorted = false;  // indices non-decreasing within each row (column for CSC)
  bool require_unique = false;  // no repeated index within a row (implied by sorted+unique)
  bool require_finite = false;  // no NaN or Inf among the values
};

/// Throws unless every size fits index type I (the message suggests int64 when it does not).
template <class I>
void check_index_capacity(int64_t rows, int64_t cols, int64_t nnz, const char* what);

template <class V, class I> void validate(const CooView<V, I>& m, const ValidateOptions& o = {});
template <class V, class I> void validate(const CsrView<V, I>& m, const ValidateOptions& o = {});
template <class V, class I> void validate(const CscView<V, I>& m, const ValidateOptions& o = {});
template <class V, class I> void validate(const BsrView<V, I>& m, const ValidateOptions& o = {});
template <class V, class I> void validate(const EllView<V, I>& m, const ValidateOptions& o = {});
template <class V, class I> void validate(const RaggedMatrix<V, I>& m, const ValidateOptions& o = {});
template <class V, class I> void validate(const Hybrid<V, I>& m, const ValidateOptions& o = {});
/// Checks a Ragged array's offsets (each level monotone from 0, ending at the next level's size).
template <class T, class I> void validate_ragged(const Ragged<T, I>& r, const char* what);

template <class V, class I> void validate(const Coo<V, I>& m, const ValidateOptions& o = {}) { validate(m.view(), o); }
template <class V, class I> void validate(const Csr<V, I>& m, const ValidateOptions& o = {}) { validate(m.view(), o); }
template <class V, class I> void validate(const Csc<V, I>& m, const ValidateOptions& o = {}) { validate(m.view(), o); }
template <class V, class I> void validate(const Bsr<V, I>& m, const ValidateOptions& o = {}) { validate(m.view(), o); }
template <class V, class I> void validate(const Ell<V, I>& m, const ValidateOptions& o = {}) { validate(m.view(), o); }
template <class V, class I> void validate(const AnySparse<V, I>& m, const ValidateOptions& o = {}) {
  std::visit([&](const auto& x) { validate(x, o); }, m);
}

}  // namespace tessera
