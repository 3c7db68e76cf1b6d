// Where the CLI's matrices come from: a file (Matrix Market, or an edge list) or a generator spec
// such as "rmat:scale=16,ef=16,seed=1". Specs: rmat (scale, ef, a, b, c, sym, loops, permute),
// er (rows, cols, density), banded (n, lower, upper), clustered (n, block, inner, outer),
// powerlaw (n, deg, exp, locality, window); all take seed and unit=1 for unit values.
#pragma once

#include <string>

#include "core/dense.h"
#include "formats/sparse.h"

namespace tessera::cli {

/// Loads or generates a matrix as CSR. A file's rows come sorted by column with duplicate entries
/// summed; a file is read as Matrix Market when it ends in .mtx or starts with the
/// %%MatrixMarket banner, otherwise as an edge list.
template <class V, class I>
Csr<V, I> load_matrix(const std::string& input, const std::string& generate);

/// Points for k-means: a .fvecs or .npy file, or a generator spec: "blobs:n=,d=,centers=,spread=,
/// seed=" (points around random centres) or "uniform:n=,d=,seed=".
DenseMatrix<float> load_points(const std::string& input, const std::string& generate);

/// Fails, naming `what`, when `bytes` exceed the memory available now (Linux's MemAvailable,
/// capped by a cgroup v2 limit): a clear error before an allocation that could only end in "out
/// of memory", in swapping, or in the kernel's OOM killer.
void require_host_memory(double bytes, const std::string& what);

/// A one-line description of the source, for tables.
std::string describe_source(const std::string& input, const std::string& generate);

}  // namespace tessera::cli
