// Two measuring kernels for bench/sddmm_bounds_gpu: the bare gather (one dense row per nonzero,
// nothing else) and an empty launch. They are yardsticks for a lower bound on any SDDMM's time,
// not operators; the library never calls them.
#pragma once

#include <cstdint>

namespace tessera::bench {

/// Reads row idx[e] of `table` (rows of row_bytes bytes, 16-byte aligned) for every e in
/// [0, count): teams of lanes walk contiguous stretches of idx, 16 bytes a lane, `rows_in_flight`
/// rows a team at a time, in one full wave of blocks. Each thread writes the 32-bit wrap-around
/// sum of the words it read to checksums[thread] (so nothing is optimised away and the host can
/// check every byte was read). row_bytes: 16, 32, 64, 128, 256 or a multiple of 512 up to 2048.
/// rows_in_flight: 2, 4, 8 or 16 (fewer are taken where a lane holds several vectors a row).
/// Returns the number of threads launched (the length of checksums it writes).
int64_t bare_gather(const int32_t* idx, int64_t count, const void* table, int64_t row_bytes, int rows_in_flight,
                    uint32_t* checksums, void* stream);

/// The most threads bare_gather launches on this device (the checksums buffer's length).
int64_t bare_gather_max_threads(int device);

/// One block of 32 threads that does nothing: the smallest launch.
void empty_launch(void* stream);

}  // namespace tessera::bench
