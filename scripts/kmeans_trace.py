#!/usr/bin/env python3
"""Summarises the per-block timelines of the GPU k-means assignment (a TESSERA_KMEANS_TRACE build).

Build with -DCMAKE_CUDA_FLAGS=-DTESSERA_KMEANS_TRACE, run one case with
TESSERA_KMEANS_TRACE_FILE=trace.bin (for example bench/kmeans_gpu --only <case>), then
    scripts/kmeans_trace.py trace.bin
prints, over the blocks of the last assignment launch, the 10th / 50th / 90th percentiles of each
phase of a block (SM clock cycles; the slots are listed in ops/kmeans/kmeans_cuda.cu), the idle
time of a block slot between one block's end and the next one's start on the same SM, and the
block's duration in nanoseconds.
"""
import argparse
import collections
import struct

SLOTS = 16


def read_blocks(path):
    data = open(path, "rb").read()
    blocks = []
    for i in range(len(data) // (8 * SLOTS)):
        v = struct.unpack_from("<%dQ" % SLOTS, data, 8 * SLOTS * i)
        if v[1]:  # started (blocks of inactive problems return before writing)
            blocks.append(v)
    return blocks


def percentiles(values):
    values = sorted(values)
    n = len(values)
    return values[n // 10], values[n // 2], values[9 * n // 10]


def slot_gaps(blocks):
    """Per SM, blocks in start order fill slots; a block takes the slot freed last before it."""
    by_sm = collections.defaultdict(list)
    for v in blocks:
        by_sm[v[0] >> 32].append(v)
    gaps = []
    for members in by_sm.values():
        members.sort(key=lambda v: v[1])
        slot_ends = []
        for v in members:
            free = [i for i, end in enumerate(slot_ends) if end <= v[1]]
            if free:
                i = max(free, key=lambda i: slot_ends[i])
                gaps.append(v[1] - slot_ends[i])
                slot_ends[i] = v[13]
            else:
                slot_ends.append(v[13])
    return gaps


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace", help="the file TESSERA_KMEANS_TRACE_FILE named")
    args = ap.parse_args()
    blocks = read_blocks(args.trace)
    if not blocks:
        raise SystemExit(f"{args.trace}: no traced blocks")
    tiles = blocks[0][0] & 0xFFFFFFFF
    print(f"{args.trace}: {len(blocks)} blocks, {tiles} centroid tiles a block")
    phases = [
        ("start -> __syncthreads", lambda v: v[3] - v[2]),
        ("-> row copies and loads issued", lambda v: v[4] - v[3]),
        ("-> rows landed (warpgroup 0)", lambda v: v[5] - v[4]),
        ("-> rows' barrier passed", lambda v: v[6] - v[5]),
        ("warpgroup 1's rows in - 0's", lambda v: v[14] - v[6]),
        ("-> first tile's MMAs done", lambda v: v[7] - v[6]),
        ("each later tile", lambda v: (v[8] - v[7]) / max(1, tiles - 1)),
        ("last MMAs: warpgroup 1 - 0", lambda v: v[9] - v[8]),
        ("last MMAs -> results stored", lambda v: v[10] - v[8]),
        ("-> past the results barrier", lambda v: v[11] - v[10]),
        ("-> block end (thread 0's sums)", lambda v: v[12] - v[11]),
        ("block, cycles", lambda v: v[12] - v[2]),
    ]
    for name, phase in phases:
        p10, p50, p90 = percentiles([phase(v) for v in blocks])
        print(f"  {name:32s} p10 {p10:8.0f}  p50 {p50:8.0f}  p90 {p90:8.0f}")
    gaps = slot_gaps(blocks)
    if gaps:
        print("  {:32s} p10 {:8.0f}  p50 {:8.0f}  p90 {:8.0f}".format(
            "slot idle between blocks, ns", *percentiles(gaps)))
    print("  {:32s} p10 {:8.0f}  p50 {:8.0f}  p90 {:8.0f}".format(
        "block, ns", *percentiles([v[13] - v[1] for v in blocks])))


if __name__ == "__main__":
    main()
