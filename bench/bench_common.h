// Pieces every benchmark program shares, CPU or GPU: the summary fields each results file carries
// (commit, date) and the ratio statistics (DESIGN.md, "How performance is measured").
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

namespace tessera::bench {

/// Parses the command line. Returns -1 to go on, or the exit code: 0 after --help, CLI11's code
/// after a bad argument, which is reported in one line, "<program>: error: ..." (CLI11_PARSE would
/// print two), or $TESSERA_ERROR_PREFIX and the message (tessera bench sets it: its own error form).
inline int parse_command_line(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
    return -1;
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    const char* prefix = std::getenv("TESSERA_ERROR_PREFIX");
    const std::string program = std::filesystem::path(argc > 0 ? argv[0] : "bench").filename().string();
    std::fprintf(stderr, "%s%s (see --help)\n", prefix ? prefix : (program + ": error: ").c_str(), what.c_str());
    return e.get_exit_code();
  }
}

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
