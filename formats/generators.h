// Matrix generators, deterministic by seed (core/random.h): the same parameters give the same
// matrix on every machine. Every generator returns a canonical CSR (rows sorted by column, no
// duplicate entries) with values uniform in [-1, 1) unless unit_values is set.
#pragma once

#include <cstdint>

#include "formats/sparse.h"

namespace tessera {

struct GenValues {
  uint64_t seed = 1;
  bool unit_values = false;  // every value 1 (adjacency matrices)
};

/// R-MAT (Chakrabarti et al.): 2^scale nodes, edge_factor * 2^scale edge draws, quadrant
/// probabilities a, b, c, d (sum 1). Duplicate draws merge into one entry.
struct RmatParams {
  int scale = 10;
  double edge_factor = 16;
  double a = 0.57, b = 0.19, c = 0.19, d = 0.05;
  bool symmetrize = false;
  bool remove_self_loops = false;
  /// Randomly relabel vertices (destroys the locality R-MAT's recursion gives); off keeps it.
  bool permute_vertices = true;
};
template <class V, class I> Csr<V, I> generate_rmat(const RmatParams& p, const GenValues& g = {});

/// Erdos-Renyi G(rows x cols, density): each entry present independently with probability density.
template <class V, class I>
Csr<V, I> generate_erdos_renyi(int64_t rows, int64_t cols, double density, const GenValues& g = {});

/// Banded n x n: entries (i, j) with -lower <= j - i <= upper, all present.
template <class V, class I>
Csr<V, I> generate_banded(int64_t n, int64_t lower, int64_t upper, const GenValues& g = {});

/// Block-diagonal / clustered n x n: diagonal blocks of size block, each entry inside a block
/// present with probability inner_density, outside with probability outer_density.
template <class V, class I>
Csr<V, I> generate_clustered(int64_t n, int64_t block, double inner_density, double outer_density,
                             const GenValues& g = {});

/// Power-law graph on n nodes: out-degrees drawn from a Zipf-like law with the given exponent and
/// mean avg_degree (at least 1 per node, capped at n); each edge's target is, with probability
/// locality, a node within +-window of the source, otherwise a node drawn by preferential weight.
template <class V, class I>
Csr<V, I> generate_power_law(int64_t n, double avg_degree, double exponent, double locality,
                             int64_t window, const GenValues& g = {});

}  // namespace tessera
