// Pieces every benchmark program shares, CPU or GPU: the summary fields each results file carries
// (commit, date) and the ratio statistics (DESIGN.md, "How performance is measured").
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <string>
#include <utility>
#include <vector>

namespace tessera::bench {

/// Geometric mean and minimum of a list of speedups.
inline std::pair<double, double> geomean_and_min(const std::vector<double>& v) {
  if (v.empty()) return {0.0, 0.0};
  double log_sum = 0, lowest = INFINITY;
  for (double s : v) log_sum += std::log(s), lowest = std::min(lowest, s);
  return {std::exp(log_sum / double(v.size())), lowest};
}

/// The commit under test: $TESSERA_COMMIT (scripts set it; the device copy has no .git).
inline std::string git_commit() {
  const char* env = std::getenv("TESSERA_COMMIT");
  return env ? env : "unknown";
}

inline std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

}  // namespace tessera::bench
