// Errors and checks. Every failure Tessera reports is a tessera::Error whose message names what is
// wrong and where (the failed condition and its source location); callers never see a partial result.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace tessera {

/// @brief The one exception type Tessera throws. what() holds the reason, then "[at file:line]".
class Error : public std::runtime_error {
 public:
  Error(const std::string& reason, const char* file, int line);
  /// @brief The reason alone, without the source location.
  const std::string& reason() const noexcept { return reason_; }

 private:
  std::string reason_;
};

namespace detail {
template <class... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
[[noreturn]] void throw_error(const char* file, int line, const std::string& reason);
}  // namespace detail

}  // namespace tessera

/// Throws tessera::Error with the streamed message when cond is false.
#define TSR_CHECK(cond, ...)                                                                \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      ::tessera::detail::throw_error(__FILE__, __LINE__, ::tessera::detail::concat(__VA_ARGS__)); \
    }                                                                                       \
  } while (0)

/// Throws tessera::Error with the streamed message unconditionally.
#define TSR_FAIL(...) ::tessera::detail::throw_error(__FILE__, __LINE__, ::tessera::detail::concat(__VA_ARGS__))
