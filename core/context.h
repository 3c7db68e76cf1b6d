// Context: the execution state an op runs in. It always exists (CPU-only builds included); GPU
// resources (stream, cuSPARSE handle, workspace) are created on first use and owned by it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

namespace tessera {

class Context {
 public:
  /// A context for the given CUDA device (ignored until a GPU resource is first asked for).
  explicit Context(int device = 0);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  int device() const { return device_; }
  /// Threads OpenMP regions of CPU ops may use (0: OpenMP's default).
  int cpu_threads() const { return cpu_threads_; }
  void set_cpu_threads(int n) { cpu_threads_ = n; }

  /// The stream device ops are queued on, as a cudaStream_t (created on first call).
  void* stream();
  /// The cuSPARSE handle bound to stream(), as a cusparseHandle_t (created on first call).
  void* cusparse_handle();
  /// Device scratch memory of at least bytes, valid until the next workspace() call. A call that
  /// grows it keeps the old contents (in the first bytes of the new block) but moves them, so
  /// pointers from before the call must be rebuilt from the new address (growing holds the old
  /// and the new block at once, and synchronises stream()).
  void* workspace(size_t bytes);
  /// Waits for the work queued on stream().
  void synchronize();

  /// A performance hint: the longest row of the CSR whose offsets array starts at `indptr` (with
  /// the given rows and nnz), as recorded by set_row_length_hint; -1 when none is recorded. Ops
  /// use it to pick a default schedule and to skip work no row needs (csr.merge_path's pieces of
  /// a hub row's carries, the GPU reductions' stretches and pieces: only where a row is that long), so a
  /// stale entry (arrays freed and the address reused) can cost speed, or change the order in
  /// which a long row's partial sums are added, never the result's correctness.
  int64_t row_length_hint(const void* indptr, int64_t rows, int64_t nnz) const;
  void set_row_length_hint(const void* indptr, int64_t rows, int64_t nnz, int64_t max_row_length);

  /// The process-wide default context (device 0).
  static Context& default_context();

 private:
  struct GpuState;
  int device_ = 0;
  int cpu_threads_ = 0;
  std::unique_ptr<GpuState> gpu_;
  std::map<std::tuple<const void*, int64_t, int64_t>, int64_t> row_length_hints_;
  GpuState& gpu();
};

}  // namespace tessera
