#!/usr/bin/env bash
# Runs one measurement on two builds side by side in one device session, alternating them, as
# bench/RESULTS.md's A/B comparisons are made: before, after, before, after, ... (an order effect
# shows as a difference between rounds). The builds come from scripts/pack_prebuilt.sh
# --keep-before (.prebuilt/before.tar.xz and .prebuilt/tessera.tar.xz); this unpacks them.
#
# Usage (on the device, from the repository root):
#   scripts/ab_prebuilt.sh [--rounds N] NAME 'COMMAND'
# COMMAND runs under bash with T = the build's tree (T/bench/spmm_gpu, T/tests/...) and D = an
# empty folder for its output, e.g.
#   scripts/ab_prebuilt.sh spmm '$T/bench/spmm_gpu --out $D --data .data --only arxiv-like --features 32,128'
# Each run's output goes to D and its log to D/log.txt; the last line of each log is echoed. All of
# it is packed into $OUT/ab_NAME.tgz (one file: the device tool returns few files and shallow
# folders), or ab_NAME.tgz here when OUT is unset. Then, on this side, unpack it and compare one
# round's runs, e.g. scripts/compare_spmm_runs.py --before ab_NAME/before1 --after ab_NAME/after1
# (SpMM JSON), or read the logs.
set -uo pipefail
cd "$(dirname "$0")/.."
rounds=2
if [ "${1:-}" = --rounds ]; then rounds=$2; shift 2; fi
[ $# -eq 2 ] || { echo "usage: scripts/ab_prebuilt.sh [--rounds N] NAME 'COMMAND'" >&2; exit 2; }
name=$1 command=$2
case $name in *[!A-Za-z0-9._-]*|'') echo "NAME: letters, digits, '.', '_' and '-' only" >&2; exit 2 ;; esac
[ -f .prebuilt/before.tar.xz ] || { echo "no .prebuilt/before.tar.xz (pack with --keep-before)" >&2; exit 1; }
bash scripts/unpack_prebuilt.sh || exit 1
out=${OUT:-.}
work=$(mktemp -d)
status=0
for ((round = 1; round <= rounds; ++round)); do
  for side in before after; do
    T=$PWD/.prebuilt/tree
    [ $side = before ] && T=$PWD/.prebuilt/before/tree
    D=$work/ab_$name/$side$round
    mkdir -p "$D"
    T=$T D=$D bash -c "$command" > "$D/log.txt" 2>&1
    rc=$?
    [ $rc = 0 ] || status=$rc
    echo "$side$round ($(cat "$T/COMMIT"), rc $rc, ${SECONDS}s): $(tail -n 1 "$D/log.txt")"
  done
done
tar -C "$work" -czf "$out/ab_$name.tgz" "ab_$name" && rm -rf "$work"
echo "wrote $out/ab_$name.tgz"
exit $status
