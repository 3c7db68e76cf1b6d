#include "core/error.h"
#include "formats/sparse.h"

namespace tessera {

const char* format_name(Format f) {
  switch (f) {
    case Format::coo: return "coo";
    case Format::csr: return "csr";
    case Format::csc: return "csc";
    case Format::bsr: return "bsr";
    case Format::ell: return "ell";
    case Format::ragged: return "ragged";
    case Format::hybrid: return "hybrid";
  }
  return "?";
}

Format parse_format(const std::string& name) {
  for (Format f : {Format::coo, Format::csr, Format::csc, Format::bsr, Format::ell, Format::ragged,
                   Format::hybrid}) {
    if (name == format_name(f)) return f;
  }
  TSR_FAIL("unknown format '", name, "' (expected coo, csr, csc, bsr, ell, ragged or hybrid)");
}

}  // namespace tessera
