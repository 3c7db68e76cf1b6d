#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: the k-means benchmark, Tessera and its peers in one run on the
# same device — bench/kmeans_gpu (building build-gpu first when it is missing or stale), then
# bench/kmeans_gpu_peers.py (flash-kmeans 0.3.1 and tqdm from the wheels in .wheels/: `pip download
# --no-deps -d .wheels flash-kmeans==0.3.1 tqdm`; and PyTorch), then
# scripts/merge_kmeans.py into <out>/<device>/kmeans.json with the summary and a Markdown table.
# Results go to $OUT/results (the device tool brings $OUT back) or bench/results.
# Usage: scripts/gpu_bench_kmeans.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build-gpu}
out=${OUT:+$OUT/results}
out=${out:-bench/results}
export TESSERA_COMMIT=${TESSERA_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
export PYTHONUNBUFFERED=1
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DTESSERA_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="${TESSERA_CUDA_ARCH:-90}" -DTESSERA_BUILD_BENCH=ON > /dev/null
cmake --build "$build" -j "$(nproc)" --target kmeans_gpu > /dev/null
if [ -d .wheels ] && ! python3 -c 'import flash_kmeans' 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/tessera-site .wheels/*.whl  # flash-kmeans and tqdm
  export PYTHONPATH=/tmp/tessera-site${PYTHONPATH:+:$PYTHONPATH}
fi
tag=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | grep -o 'H100\|H200\|A100\|L40S' || echo gpu)
mkdir -p "$out/$tag"
quick=(); [ "${1:-}" = --quick ] && quick=(--quick)
echo "=== kmeans_gpu ${quick[*]}"
"$build/bench/kmeans_gpu" "${quick[@]}" --out "$out/$tag/kmeans_ours.json"
echo "=== kmeans_gpu_peers.py ${quick[*]}"
python3 bench/kmeans_gpu_peers.py "${quick[@]}" --out "$out/$tag/kmeans_peers.json"
python3 scripts/merge_kmeans.py --ours "$out/$tag/kmeans_ours.json" \
  --peers "$out/$tag/kmeans_peers.json" --out "$out/$tag/kmeans.json" --markdown
