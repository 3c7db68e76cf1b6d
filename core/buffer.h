// Buffer<T>: an owning, contiguous array on the host or on a device. Copying a Buffer copies its
// contents into the same space; to() copies across spaces. Host memory is 64-byte aligned.
#pragma once

#include <cstddef>
#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/device.h"
#include "core/error.h"

namespace tessera {

template <class T>
class Buffer {
  static_assert(std::is_trivially_copyable_v<T>, "Buffer holds trivially copyable types only");

 public:
  static constexpr size_t kHostAlignment = 64;

  using value_type = T;

  Buffer() = default;
  /// Allocates n uninitialised elements in space.
  explicit Buffer(size_t n, MemorySpace space = MemorySpace::host) : size_(n), space_(space) {
    allocate();
  }
  /// Allocates n host elements, each set to fill.
  Buffer(size_t n, const T& fill) : size_(n) {
    allocate();
    for (size_t i = 0; i < n; ++i) data_[i] = fill;
  }
  Buffer(std::initializer_list<T> values) : Buffer(values.size()) {
    std::copy(values.begin(), values.end(), data_);
  }
  /// Copies a host vector into space.
  explicit Buffer(const std::vector<T>& v, MemorySpace space = MemorySpace::host)
      : Buffer(v.size(), space) {
    device::copy(data_, space_, v.data(), MemorySpace::host, bytes());
  }
  Buffer(const Buffer& other) : Buffer(other.size_, other.space_) {
    device::copy(data_, space_, other.data_, other.space_, bytes());
  }
  Buffer(Buffer&& other) noexcept { swap(other); }
  Buffer& operator=(const Buffer& other) {
    if (this != &other) {
      Buffer copy(other);
      swap(copy);
    }
    return *this;
  }
  Buffer& operator=(Buffer&& other) noexcept {
    swap(other);
    return *this;
  }
  ~Buffer() { deallocate(); }

  void swap(Buffer& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    std::swap(space_, other.space_);
  }

  /// A copy of this buffer's contents in space (a plain copy if already there).
  Buffer to(MemorySpace space) const {
    Buffer out(size_, space);
    device::copy(out.data_, space, data_, space_, bytes());
    return out;
  }
  /// Host copy of the contents, wherever they live.
  std::vector<T> to_vector() const {
    std::vector<T> v(size_);
    device::copy(v.data(), MemorySpace::host, data_, space_, bytes());
    return v;
  }

  T* data() noexcept { return data_; }
  const T* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }
  size_t bytes() const noexcept { return size_ * sizeof(T); }
  bool empty() const noexcept { return size_ == 0; }
  MemorySpace space() const noexcept { return space_; }
  bool on_host() const noexcept { return space_ == MemorySpace::host; }

  // Element access: host buffers only (unchecked in release builds, like std::vector).
  T& operator[](size_t i) noexcept { return data_[i]; }
  const T& operator[](size_t i) const noexcept { return data_[i]; }
  T* begin() noexcept { return data_; }
  T* end() noexcept { return data_ + size_; }
  const T* begin() const noexcept { return data_; }
  const T* end() const noexcept { return data_ + size_; }

 private:
  void allocate() {
    if (size_ == 0) return;
    TSR_CHECK(size_ <= (size_t(-1) / sizeof(T)), "buffer of ", size_, " elements overflows size_t");
    if (space_ == MemorySpace::host) {
      data_ = static_cast<T*>(::operator new(bytes(), std::align_val_t(kHostAlignment)));
    } else {
      data_ = static_cast<T*>(device::allocate(bytes()));
    }
  }
  void deallocate() noexcept {
    if (!data_) return;
    if (space_ == MemorySpace::host) {
      ::operator delete(data_, std::align_val_t(kHostAlignment));
    } else {
      device::release(data_);
    }
    data_ = nullptr;
  }

  T* data_ = nullptr;
  size_t size_ = 0;
  MemorySpace space_ = MemorySpace::host;
};

}  // namespace tessera
