// Wall-clock timing for host code. GPU code is timed with CUDA events (see ops/*/ *.cu harnesses).
#pragma once

#include <chrono>

namespace tessera {

class WallTimer {
 public:
  WallTimer() : start_(std::chrono::steady_clock::now()) {}
  void reset() { start_ = std::chrono::steady_clock::now(); }
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

}  // namespace tessera
