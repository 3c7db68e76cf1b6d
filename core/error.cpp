#include "core/error.h"

#include <cstring>

namespace tessera {

namespace {
const char* short_path(const char* file) {
  // Keep the path from the project root down ("formats/io.cpp"), not the build machine's prefix.
  static const char* kRoots[] = {"/core/", "/formats/", "/ops/", "/cli/", "/tests/", "/bench/",
                                 "/schedule/", "/autotune/", "/gnn/", "/vector_index/", "/examples/"};
  const char* best = file;
  for (const char* root : kRoots) {
    const char* hit = std::strstr(file, root);
    if (hit && (best == file || hit > best)) best = hit + 1;
  }
  return best;
}
}  // namespace

Error::Error(const std::string& reason, const char* file, int line)
    : std::runtime_error(reason + " [at " + short_path(file) + ":" + std::to_string(line) + "]"),
      reason_(reason) {}

namespace detail {
void throw_error(const char* file, int line, const std::string& reason) {
  throw Error(reason, file, line);
}
}  // namespace detail

}  // namespace tessera
