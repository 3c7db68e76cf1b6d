// How fast could an SDDMM be on this suite? A lower bound on each case's time, measured on the
// device beside cuSPARSE's SDDMM and our default, so that a speedup target over cuSPARSE can be read
// against what the hardware allows (bench/RESULTS.md, "SDDMM", the 8x target).
//
// Every SDDMM out[e] = <X[row(e)], Y[col(e)]> brings, for each nonzero, an F-wide row of X or Y
// into an SM unless that row is already held there. The known designs fall into three families,
// and each is given a yardstick that does only the row reads the family cannot avoid, with
// everything else free (no index walk beyond one index a row read, no products, no output; the
// bare gather of bench/sddmm_bounds_kernels.cu, at its best of 4 / 8 / 16 rows in flight, fewer
// where a lane holds several 16-byte pieces of a row, F >= 256; the JSON's gather_rows_in_flight
// is the count asked for):
//   1. a row per nonzero (cuSPARSE, our row and edge splits, DGL's and PyG's gathers): Y's row
//      for each nonzero, with the K most frequent columns left out as if served free from shared
//      memory (K = the rows one SM's shared memory holds), gathered in CSR order and again folded
//      into a table of half the L2 (column mod its rows: every row hot in L2, as though the edge
//      order had kept it there); the faster of the two;
//   2. column tiles: Y's rows of a tile of K columns held in shared memory, the rows of X having a
//      nonzero in the tile streamed in, tile after tile;
//   3. row tiles: the same with X's tile held and Y's rows streamed.
// The bound is the largest of: the empty launch (one block of 32 threads that does nothing, timed
// the same way: CUDA events, L2 flushed before, median), the perfect-reuse byte floor (A's indices
// and offsets, X and Y read once, the output written once, at the measured copy bandwidth, as in
// sddmm_gpu), and the fastest of the three families. cusparse_ms / bound_ms is the most any SDDMM
// of these families could gain over cuSPARSE on the case. Not covered: 2-D tiles holding parts of
// X and Y at once, and a hub cache combined with tiling (either could add reuse that no yardstick
// here counts).
//
//   sddmm_bounds_gpu [--quick] [--only NAME,...] [--features 32,64,...] [--reps N] [--out DIR] [--data DIR]
//                    [--prototype]   (also the two prototype column-tiled SDDMM kernels of
//                                     sddmm_column_tiled_prototype.h, checked and timed)
// Writes <out>/<device>/sddmm_bounds.json (sddmm_bounds-<name>.json with --only) with a summary.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>

#include "bench/gpu_harness.h"
#include "bench/sddmm_bounds_kernels.h"
#include "bench/sddmm_column_tiled_prototype.h"
#include "core/device.h"
#include "ops/cusparse_plan.h"
#include "ops/device_schedule.h"
#include "ops/sddmm/sddmm.h"

using namespace tessera;
using namespace tessera::bench;
using json = nlohmann::ordered_json;

namespace {

/// Per row of a host table of `rows` rows of row_bytes bytes: the wrap-around sum of its 32-bit
/// words (what bare_gather adds up for one visit of the row).
std::vector<uint32_t> row_word_sums(const void* table, int64_t rows, int64_t row_bytes) {
  std::vector<uint32_t> sums(size_t(rows), 0);
  const auto* bytes = static_cast<const unsigned char*>(table);
  for (int64_t r = 0; r < rows; ++r) {
    uint32_t s = 0;
    for (int64_t w = 0; w < row_bytes / 4; ++w) {
      uint32_t word;
      std::memcpy(&word, bytes + r * row_bytes + w * 4, 4);
      s += word;
    }
    sums[size_t(r)] = s;
  }
  return sums;
}

/// The nonzeros' columns with those of the `hubs` most frequent columns left out (ties broken by
/// the lower column), in the original order.
std::vector<int32_t> without_hub_columns(const std::vector<int32_t>& cols, int64_t num_cols, int64_t hubs) {
  std::vector<int64_t> degree(size_t(num_cols), 0);
  for (int32_t c : cols) ++degree[size_t(c)];
  std::vector<int32_t> order(static_cast<size_t>(num_cols));
  std::iota(order.begin(), order.end(), 0);
  hubs = std::min(hubs, num_cols);
  std::partial_sort(order.begin(), order.begin() + hubs, order.end(), [&](int32_t a, int32_t b) {
    return degree[size_t(a)] != degree[size_t(b)] ? degree[size_t(a)] > degree[size_t(b)] : a < b;
  });
  std::vector<char> hub(size_t(num_cols), 0);
  for (int64_t i = 0; i < hubs; ++i) hub[size_t(order[size_t(i)])] = 1;
  std::vector<int32_t> kept;
  kept.reserve(cols.size());
  for (int32_t c : cols) {
    if (!hub[size_t(c)]) kept.push_back(c);
  }
  return kept;
}

/// The rows of X a column-tiled SDDMM must read (Y's rows of one tile of `tile` columns held in an
/// SM's shared memory, A's nonzeros in that tile walked row by row): for each tile in turn, the rows
/// with a nonzero in it, increasing. A's columns are sorted within each row.
std::vector<int32_t> column_tiled_stream(const Csr<float, int32_t>& a, int64_t tile) {
  const int64_t tiles = (a.cols + tile - 1) / tile;
  std::vector<int64_t> start(size_t(tiles) + 1, 0);
  const auto for_each_pair = [&](auto&& visit) {  // (tile, row) for every row's distinct tiles
    for (int64_t r = 0; r < a.rows; ++r) {
      int64_t last = -1;
      for (int32_t k = a.indptr.data()[r]; k < a.indptr.data()[r + 1]; ++k) {
        const int64_t t = a.indices.data()[k] / tile;
        if (t != last) visit(t, int32_t(r)), last = t;
      }
    }
  };
  for_each_pair([&](int64_t t, int32_t) { ++start[size_t(t) + 1]; });
  for (int64_t t = 0; t < tiles; ++t) start[size_t(t) + 1] += start[size_t(t)];
  std::vector<int32_t> out(size_t(start[size_t(tiles)]));
  for_each_pair([&](int64_t t, int32_t r) { out[size_t(start[size_t(t)]++)] = r; });
  return out;
}

/// The rows of Y a row-tiled SDDMM must read (X's rows of one tile of `tile` rows held in shared
/// memory): for each tile in turn, the distinct columns of its nonzeros, increasing.
std::vector<int32_t> row_tiled_stream(const Csr<float, int32_t>& a, int64_t tile) {
  std::vector<int64_t> seen_in(size_t(a.cols), -1);
  std::vector<int32_t> out;
  for (int64_t first = 0, t = 0; first < a.rows; first += tile, ++t) {
    const size_t begin = out.size();
    for (int32_t k = a.indptr.data()[first]; k < a.indptr.data()[std::min(a.rows, first + tile)]; ++k) {
      const int32_t c = a.indices.data()[k];
      if (seen_in[size_t(c)] != t) seen_in[size_t(c)] = t, out.push_back(c);
    }
    std::sort(out.begin() + std::ptrdiff_t(begin), out.end());
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{
      "GPU SDDMM lower bounds (empty launch, byte floor, gathers of three algorithm families) beside cuSPARSE"};
  bool quick = false;
  std::string out_dir = "bench/results", data_dir = TESSERA_SHARED_DATA;
  std::vector<int64_t> features{32, 64, 128, 256};
  std::vector<std::string> only;
  int reps = 20;
  bool with_prototype = false;
  app.add_flag("--quick", quick, "small graphs only (a smoke run)");
  app.add_flag("--prototype", with_prototype,
               "also time the prototype column-tiled SDDMM kernels (F = 32, 64, 128; bench/RESULTS.md)");
  app.add_option("--only", only, "run just these matrices (names as in the table)")->delimiter(',');
  app.add_option("--out", out_dir, "results folder; the file goes to <out>/<device>/sddmm_bounds.json");
  app.add_option("--data", data_dir, "shared data folder (SuiteSparse .mtx under mtx/, cora/)");
  app.add_option("--features", features, "feature widths F (32, 64, 128, 256, 384, 512)")->delimiter(',');
  app.add_option("--reps", reps, "timed repetitions per measurement (median reported)");
  if (const int code = bench::parse_command_line(app, argc, argv); code >= 0) return code;
  for (int64_t F : features) {  // the row widths bare_gather takes: 128, 256, 512, 1024, 1536 or 2048 bytes
    TSR_CHECK(F == 32 || F == 64 || F == 128 || F == 256 || F == 384 || F == 512, "--features: F = ", F,
              " is not 32, 64, 128, 256, 384 or 512");
  }
  TSR_CHECK(reps >= 1, "--reps: ", reps, " is not a positive count");
  TSR_CHECK(device::available(), "sddmm_bounds_gpu needs a CUDA device");

  const std::vector<Matrix> matrices = suite(data_dir, quick, only);
  Context ctx;
  Timer timer(ctx);
  void* stream = ctx.stream();
  const double copy_gbps = timer.copy_gbps(size_t(1) << 30);
  const double empty_ms = timer.median_ms([&] { empty_launch(stream); }, std::max(reps, 20));
  cudaDeviceProp prop{};
  TSR_CUDA_CHECK(cudaGetDeviceProperties(&prop, ctx.device()));
  const int64_t smem_per_sm = int64_t(prop.sharedMemPerMultiprocessor);
  Buffer<uint32_t> checksums(size_t(bare_gather_max_threads(ctx.device())), MemorySpace::device);

  const std::vector<int> kRowsInFlight{4, 8, 16};  // every stream is timed at its best of these
  // The bare gather of `table`'s rows (row_bytes each) over an index stream, at the best of
  // `in_flight` rows in flight; the first run's checksum total is checked against the host's
  // (word_sums: each table row's). Returns {ms, rows in flight}.
  auto time_gather = [&](const std::vector<int32_t>& host_idx, const void* table,
                         const std::vector<uint32_t>& word_sums, int64_t row_bytes, const std::string& what,
                         const std::vector<int>& in_flight) {
    Buffer<int32_t> idx(host_idx.size(), MemorySpace::device);
    // Empty when every column is a hub: the gather is then a bare launch. device::copy returns once
    // the copy has landed (the gathers run on the context's non-blocking stream).
    device::copy(idx.data(), MemorySpace::device, host_idx.data(), MemorySpace::host, host_idx.size() * 4);
    uint32_t want = 0;
    for (int32_t c : host_idx) want += word_sums[size_t(c)];
    double best = INFINITY;
    int best_g = 0;
    for (int g : in_flight) {
      int64_t threads = 0;
      const auto run = [&] {
        threads = bare_gather(idx.data(), int64_t(host_idx.size()), table, row_bytes, g, checksums.data(), stream);
      };
      run();
      ctx.synchronize();
      const std::vector<uint32_t> got = checksums.to_vector();
      const uint32_t total = std::accumulate(got.begin(), got.begin() + threads, uint32_t(0));
      TSR_CHECK(total == want, what, ": the bare gather's checksum ", total, " is not the host's ", want);
      const double ms = timer.median_ms(run, reps);
      if (ms < best) best = ms, best_g = g;
    }
    return std::pair(best, best_g);
  };

  json cases = json::array();
  std::vector<double> reachable, reached, reachable_large, reached_large, bound_over_default;
  std::vector<double> prototype_vs_cusparse, prototype_vs_default;  // the cases the prototype ran
  const std::filesystem::path dir = std::filesystem::path(out_dir) / device::tag(ctx.device());
  std::filesystem::create_directories(dir);
  const std::string file = std::string(only.empty() ? "sddmm_bounds" : "sddmm_bounds-" + only.front()) + ".json";
  auto write_results = [&](bool complete) {
    const auto [reach_geomean, reach_min] = geomean_and_min(reachable);
    const auto [reached_geomean, reached_min] = geomean_and_min(reached);
    const auto [reach_large_geomean, reach_large_min] = geomean_and_min(reachable_large);
    const auto [reached_large_geomean, reached_large_min] = geomean_and_min(reached_large);
    const auto [of_bound_geomean, of_bound_min] = geomean_and_min(bound_over_default);
    const auto [prototype_geomean, prototype_min] = geomean_and_min(prototype_vs_cusparse);
    const auto [prototype_default_geomean, prototype_default_min] = geomean_and_min(prototype_vs_default);
    json doc;
    doc["summary"] = {{"device", device::name(ctx.device())},
                      {"commit", git_commit()},
                      {"date", utc_now()},
                      {"cases", reachable.size()},
                      {"geomean_reachable_speedup_vs_cusparse", reach_geomean},
                      {"max_reachable_speedup_vs_cusparse",
                       reachable.empty() ? 0.0 : *std::max_element(reachable.begin(), reachable.end())},
                      {"geomean_speedup_vs_cusparse", reached_geomean},
                      {"min_speedup_vs_cusparse", reached_min},
                      {"large_cases", reachable_large.size()},
                      {"geomean_reachable_speedup_vs_cusparse_large", reach_large_geomean},
                      {"geomean_speedup_vs_cusparse_large", reached_large_geomean},
                      {"geomean_bound_over_default", of_bound_geomean},
                      {"prototype_cases", prototype_vs_cusparse.size()},
                      {"geomean_prototype_speedup_vs_cusparse", prototype_geomean},
                      {"geomean_prototype_speedup_vs_default", prototype_default_geomean},
                      {"min_prototype_speedup_vs_default", prototype_default_min},
                      {"empty_launch_ms", empty_ms},
                      {"copy_gbps", copy_gbps},
                      {"shared_memory_per_sm_bytes", smem_per_sm},
                      {"l2_bytes", prop.l2CacheSize},
                      {"complete", complete},
                      {"timing", "CUDA events, L2 flushed, median"},
                      {"quick", quick}};
    doc["cases"] = cases;
    std::ofstream(dir / file) << doc.dump(2) << "\n";
    return std::pair(reach_geomean, reached_geomean);
  };
  std::printf("empty launch %.4f ms, copy %.0f GB/s, %lld B shared memory an SM, L2 %d B\n", empty_ms, copy_gbps,
              (long long)smem_per_sm, prop.l2CacheSize);
  std::printf(
      "| matrix | nnz | F | cuSPARSE ms | default ms | gather ms | hub-cached gather ms (share) | in L2 ms | "
      "column-tiled ms | row-tiled ms | byte floor ms | bound ms | cuSPARSE/bound | cuSPARSE/default |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const Matrix& m : matrices) {
    const Csr<float, int32_t> da = m.csr.to(MemorySpace::device);
    const std::vector<int32_t> cols(m.csr.indices.data(), m.csr.indices.data() + m.csr.nnz());
    for (int64_t F : features) {
      const DenseMatrix<float> hx = uniform_dense<float>(m.csr.rows, F, 8);
      const DenseMatrix<float> hy = uniform_dense<float>(m.csr.cols, F, 9);
      const DenseMatrix<float> dx = hx.to(MemorySpace::device), dy = hy.to(MemorySpace::device);
      Buffer<float> out(size_t(m.csr.nnz()), MemorySpace::device);
      auto result = [&] {
        ctx.synchronize();
        return out.to_vector();
      };
      // NaNs in every output, on the stream the kernels run on: an output a kernel skips fails the check.
      const auto poison = [&](Buffer<float>& o) {
        TSR_CUDA_CHECK(cudaMemsetAsync(o.data(), 0xff, o.size() * sizeof(float), static_cast<cudaStream_t>(stream)));
      };
      ops::CusparsePlan plan = ops::CusparsePlan::sddmm(ctx, da.view(), dx.view(), dy.view(), out.data());
      const double cusparse_ms = timer.median_ms([&] { plan.run(); }, reps);
      const std::vector<float> want = result();
      auto run_default = [&] {
        ops::SddmmOptions o;
        o.validate = false;
        ops::sddmm(ctx, da.view(), dx.view(), dy.view(), out.data(), o);
      };
      poison(out);
      run_default();
      const double err = relative_error(result(), want);
      TSR_CHECK(err < 1e-4, m.name, " F=", F, ": the default differs from cuSPARSE by ", err);
      const double default_ms = timer.median_ms(run_default, reps);
      const schedule::Schedule def =
          ops::detail::choose_schedule(ctx, schedule::Op::sddmm, da.view(), F, F, F, std::nullopt);

      const int64_t row_bytes = F * 4;
      const std::string where = m.name + " F=" + std::to_string(F);
      const std::vector<uint32_t> x_sums = row_word_sums(hx.data(), m.csr.rows, row_bytes);
      const std::vector<uint32_t> y_sums = row_word_sums(hy.data(), m.csr.cols, row_bytes);
      const int64_t smem_rows = smem_per_sm / row_bytes;  // rows of X or Y one SM's shared memory holds

      // Family 1, a row per nonzero: the column stream in CSR order, all of it (for reference),
      // then without the smem_rows hottest columns (served free from shared memory), in CSR order
      // and folded into a table of half the L2 (column mod its rows: every row hot in L2).
      const auto [gather_ms, g] = time_gather(cols, dy.data(), y_sums, row_bytes, where, kRowsInFlight);
      const std::vector<int32_t> rest = without_hub_columns(cols, m.csr.cols, smem_rows);
      const double hub_cached_ms =
          time_gather(rest, dy.data(), y_sums, row_bytes, where + " hub-cached", kRowsInFlight).first;
      const int64_t l2_rows =
          std::max<int64_t>(1, std::min<int64_t>(m.csr.cols, int64_t(prop.l2CacheSize) / 2 / row_bytes));
      std::vector<int32_t> folded(rest.size());
      for (size_t i = 0; i < rest.size(); ++i) folded[i] = int32_t(rest[i] % l2_rows);
      const double in_l2_ms = time_gather(folded, dy.data(), y_sums, row_bytes, where + " in L2", kRowsInFlight).first;
      // Families 2 and 3: one operand's tile of smem_rows rows in shared memory, the other's rows
      // each tile touches streamed in.
      const std::vector<int32_t> column_tiled = column_tiled_stream(m.csr, smem_rows);
      const std::vector<int32_t> row_tiled = row_tiled_stream(m.csr, smem_rows);
      const double column_tiled_ms =
          time_gather(column_tiled, dx.data(), x_sums, row_bytes, where + " column-tiled", kRowsInFlight).first;
      const double row_tiled_ms =
          time_gather(row_tiled, dy.data(), y_sums, row_bytes, where + " row-tiled", kRowsInFlight).first;

      // With --prototype, the two prototype column-tiled kernels (F = 32, 64, 128) on tiles filling
      // a block's shared memory and half of it, chunks of 32 * tile_cols nonzeros; each checked
      // against cuSPARSE's output after poisoning.
      json prototype = json::object();
      double prototype_ms = INFINITY;
      if (with_prototype && (F == 32 || F == 64 || F == 128)) {
        const int64_t max_block_smem = int64_t(prop.sharedMemPerBlockOptin);
        for (const int64_t tile_cols : {max_block_smem / row_bytes, max_block_smem / 2 / row_bytes}) {
          const ColumnTiles tiles = build_column_tiles(m.csr.indptr.data(), m.csr.indices.data(), m.csr.rows,
                                                       m.csr.cols, tile_cols, 32 * tile_cols);
          const DeviceColumnTiles device_tiles(tiles);
          for (const auto& [kernel_name, kernel] : {std::pair{"team per segment", TiledKernel::team_per_segment},
                                                    std::pair{"lane per nonzero", TiledKernel::lane_per_nonzero}}) {
            const auto run_tiled = [&, kernel = kernel] {
              device_tiles.run(kernel, da.indices.data(), dx.data(), dy.data(), m.csr.cols, F, out.data(), stream);
            };
            poison(out);
            run_tiled();
            const double tiled_err = relative_error(result(), want);
            TSR_CHECK(tiled_err < 1e-4, where, ": the column-tiled prototype (", kernel_name, ", ", tile_cols,
                      " columns) differs from cuSPARSE by ", tiled_err);
            const double ms = timer.median_ms(run_tiled, reps);
            prototype[std::string(kernel_name) + ", " + std::to_string(tile_cols) + " columns, " +
                      std::to_string(tiles.chunk_tile.size()) + " chunks"] = ms;
            prototype_ms = std::min(prototype_ms, ms);
          }
        }
      }

      const double nnz = double(m.csr.nnz()), rows = double(m.csr.rows), ncols = double(m.csr.cols);
      const double floor_reuse_ms =
          (nnz * 4 + (rows + 1) * 4 + nnz * 4 + rows * F * 4 + ncols * F * 4) / (copy_gbps * 1e9) * 1e3;
      const double fastest_family = std::min({hub_cached_ms, in_l2_ms, column_tiled_ms, row_tiled_ms});
      const double bound_ms = std::max({empty_ms, floor_reuse_ms, fastest_family});
      const char* bound_from = bound_ms == empty_ms          ? "empty launch"
                               : bound_ms == floor_reuse_ms  ? "perfect-reuse byte floor"
                               : bound_ms == hub_cached_ms   ? "hub-cached gather"
                               : bound_ms == in_l2_ms        ? "hub-cached gather in L2"
                               : bound_ms == column_tiled_ms ? "column-tiled stream"
                                                             : "row-tiled stream";
      const double hub_share = 1.0 - double(rest.size()) / std::max(nnz, 1.0);
      cases.push_back({{"matrix", m.name},
                       {"rows", m.csr.rows},
                       {"nnz", m.csr.nnz()},
                       {"F", F},
                       {"cusparse_ms", cusparse_ms},
                       {"default_schedule", def.to_string()},
                       {"default_ms", default_ms},
                       {"gather_ms", gather_ms},
                       {"gather_rows_in_flight", g},
                       {"hub_rows", smem_rows},
                       {"hub_share_of_nonzeros", hub_share},
                       {"hub_cached_gather_ms", hub_cached_ms},
                       {"l2_table_rows", l2_rows},
                       {"hub_cached_gather_in_l2_ms", in_l2_ms},
                       {"column_tiled_ms", column_tiled_ms},
                       {"row_tiled_ms", row_tiled_ms},
                       {"rows_read",
                        {{"gather", cols.size()},
                         {"hub_cached", rest.size()},
                         {"column_tiled", column_tiled.size()},
                         {"row_tiled", row_tiled.size()}}},
                       {"floor_perfect_reuse_ms", floor_reuse_ms},
                       {"empty_launch_ms", empty_ms},
                       {"column_tiled_prototype_ms", prototype},
                       {"bound_ms", bound_ms},
                       {"bound_from", bound_from},
                       {"reachable_speedup_vs_cusparse", cusparse_ms / bound_ms},
                       {"speedup_default_vs_cusparse", cusparse_ms / default_ms},
                       {"bound_over_default", bound_ms / default_ms}});
      if (std::isfinite(prototype_ms)) {
        cases.back()["column_tiled_prototype_best_ms"] = prototype_ms;
        cases.back()["speedup_prototype_vs_cusparse"] = cusparse_ms / prototype_ms;
        cases.back()["speedup_prototype_vs_default"] = default_ms / prototype_ms;
        prototype_vs_cusparse.push_back(cusparse_ms / prototype_ms);
        prototype_vs_default.push_back(default_ms / prototype_ms);
      }
      reachable.push_back(cusparse_ms / bound_ms);
      reached.push_back(cusparse_ms / default_ms);
      bound_over_default.push_back(bound_ms / default_ms);
      if (m.csr.nnz() >= (int64_t(1) << 24)) {
        reachable_large.push_back(cusparse_ms / bound_ms);
        reached_large.push_back(cusparse_ms / default_ms);
      }
      std::printf(
          "| %s | %lld | %lld | %.4f | %.4f | %.4f | %.4f (%.1f%%) | %.4f | %.4f | %.4f | %.4f | %.4f | %.2fx | "
          "%.2fx |\n",
          m.name.c_str(), (long long)m.csr.nnz(), (long long)F, cusparse_ms, default_ms, gather_ms, hub_cached_ms,
          100 * hub_share, in_l2_ms, column_tiled_ms, row_tiled_ms, floor_reuse_ms, bound_ms, cusparse_ms / bound_ms,
          cusparse_ms / default_ms);
      std::fflush(stdout);
      write_results(false);
    }
  }
  const auto [reach, got] = write_results(true);
  std::printf("\nreachable geomean over cuSPARSE %.3fx (our default %.3fx) over %zu cases; wrote %s\n", reach, got,
              reachable.size(), (dir / file).c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "sddmm_bounds_gpu: error: %s\n", e.what());
  return 1;
}
