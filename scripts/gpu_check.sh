#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: Release build with CUDA on all cores, every test (cpu and gpu
# labels), compute-sanitizer memcheck over the GPU tests, and a short summary at the end.
# Usage: scripts/gpu_check.sh [build-dir]   (CUDA architecture: TESSERA_CUDA_ARCH, default 90)
# A build-dir without CMakeCache.txt but with tests/ is taken as prebuilt binaries (see
# scripts/pack_prebuilt.sh): the GPU test binaries, sanitizers and CLI checks run without a build.
# Real data: ../shared/data beside the checkout, or on a machine without it a copy under .data/
# (mtx/, cora/, ann/ngt_sift5k/ of shared/data; the device tool carries it), passed to the tests
# as TESSERA_DATA.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
arch=${TESSERA_CUDA_ARCH:-90}
out=${OUT:-$build}
mkdir -p "$out"
summary=()
step() {  # step NAME COMMAND...: runs, records PASS/FAIL
  local name=$1; shift
  echo "=== $name"
  if "$@"; then summary+=("PASS  $name"); else summary+=("FAIL  $name"); fi
}
if [ -z "${TESSERA_DATA:-}" ] && [ ! -d ../shared/data/mtx ] && [ -d .data/mtx ]; then
  export TESSERA_DATA="$PWD/.data"
fi
echo "real data: ${TESSERA_DATA:-../shared/data}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
if [ -f "$build/CMakeCache.txt" ] || [ ! -d "$build/tests" ]; then
  gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
  step configure cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DTESSERA_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="$arch" -DTESSERA_BUILD_BENCH=ON
  step build cmake --build "$build" -j "$(nproc)"
  step "ctest (cpu + gpu)" env OMP_NUM_THREADS=2 ctest --test-dir "$build" --output-on-failure -j 8 --timeout 900
else
  # A prebuilt tree (scripts/pack_prebuilt.sh: tests/test_gpu_*, cli/tessera, bench/*_gpu built
  # elsewhere for this GPU): no build, no ctest; each GPU test binary runs on its own. The
  # package's COMMIT file names the commit (unless TESSERA_COMMIT says otherwise).
  [ -z "${TESSERA_COMMIT:-}" ] && [ -f "$build/COMMIT" ] && TESSERA_COMMIT=$(cat "$build/COMMIT")
  echo "prebuilt binaries in $build (built at ${TESSERA_COMMIT:-an unknown commit})"
  for t in "$build"/tests/test_gpu_*; do
    [ -x "$t" ] || { summary+=("FAIL  no GPU test binaries in $build/tests"); break; }
    step "gpu tests $(basename "$t")" "$t" --gtest_brief=1
  done
fi
# Each sanitizer run stops after TESSERA_SANITIZER_TIMEOUT seconds (default 1200): a FAIL then.
sanitizer_limit=${TESSERA_SANITIZER_TIMEOUT:-1200}
if command -v compute-sanitizer >/dev/null; then
  for t in "$build"/tests/test_gpu_*; do
    [ -x "$t" ] || continue
    # test_gpu_ops: its typed sweeps for f32/int32 and f16/int64 (both index widths, both the f32
    # and the 16-bit paths) and every untyped test; the other two types repeat the same kernels
    # and would triple the sanitizer's time.
    mfilter='*'
    [ "$(basename "$t")" = test_gpu_ops ] && mfilter='-GpuOps/1.*:GpuOps/2.*'
    step "memcheck $(basename "$t")" timeout "$sanitizer_limit" compute-sanitizer --tool memcheck \
      --error-exitcode 1 --leak-check full "$t" --gtest_brief=1 --gtest_filter="$mfilter"
    # racecheck on the kernels with shared memory, where the binary has such tests (a filter that
    # matches nothing leaves compute-sanitizer nothing to instrument: an error, not a pass).
    filter='GpuOps/1.SpmmCsr*:GpuOps/1.SddmmCsr*:GpuOps/1.SpmmBsr*:GpuOps/3.SpmmBsr*'
    filter+=':GpuOps.Deterministic*:GpuOps.EllHybrid*'
    filter+=':GpuKmeans/1.One*:GpuKmeansOps.Ties*:GpuKmeansOps.Empty*:GpuKmeansOps.ExactF32*:GpuKmeansOps.Wide*'
    filter+=':GpuKmeansOps.Counts*:GpuKmeansOps.NormsFromTheFirst*:GpuKmeansOps.LabelMajor*:GpuKmeansOps.TensorMapRows*'
    if "$t" --gtest_list_tests --gtest_filter="$filter" | grep -q '^  '; then
      step "racecheck $(basename "$t")" timeout "$sanitizer_limit" compute-sanitizer --tool racecheck \
        --error-exitcode 1 "$t" --gtest_brief=1 --gtest_filter="$filter"
    fi
  done
else
  summary+=("SKIP  compute-sanitizer not found")
fi
if [ -x "$build/cli/tessera" ]; then
  step "cli info" "$build/cli/tessera" info
  step "cli spmm --device cuda --check" "$build/cli/tessera" spmm --generate rmat:scale=16 \
    --features 64 --device cuda --check
  step "cli spmm merge_path bf16 --check" "$build/cli/tessera" spmm --generate rmat:scale=16 \
    --features 33 --dtype bf16 --device cuda --schedule csr.merge_path:tpr=8,ipt=64 --check
  step "cli spmm bsr 16x16 --device cuda --check" "$build/cli/tessera" spmm --generate rmat:scale=14 \
    --format bsr --block 16 --features 40 --device cuda --check
  step "cli spmm --reduce max --device cuda --check" "$build/cli/tessera" spmm --generate rmat:scale=14 \
    --features 37 --dtype bf16 --device cuda --reduce max --check
  step "cli spmm bsr cuSPARSE Blocked-ELL --check" "$build/cli/tessera" spmm --generate rmat:scale=14 \
    --format bsr --block 8 --features 24 --device cuda --schedule bsr.cusparse_blocked_ell --repeat 1 --check
  step "cli spmm hybrid --deterministic --check" "$build/cli/tessera" spmm --generate rmat:scale=16 \
    --format hybrid --hyb-c 4 --features 33 --dtype bf16 --device cuda --deterministic --check
  step "cli spmm ell --check" "$build/cli/tessera" spmm --generate rmat:scale=12 --format ell \
    --features 64 --device cuda --check
  step "cli spmm csr --deterministic --check" "$build/cli/tessera" spmm --generate rmat:scale=16 \
    --features 64 --device cuda --deterministic --check
  step "cli sddmm --device cuda --check" "$build/cli/tessera" sddmm --generate rmat:scale=16 \
    --features 64 --device cuda --check
  step "cli sddmm coo --check" "$build/cli/tessera" sddmm --generate rmat:scale=16 --format coo \
    --features 33 --device cuda --check
  step "cli sddmm cusparse --check" "$build/cli/tessera" sddmm --generate rmat:scale=16 \
    --features 64 --device cuda --schedule csr.cusparse --check
  step "cli kmeans --device cuda --check (f32)" "$build/cli/tessera" kmeans \
    -g blobs:n=60000,d=37,centers=50 -k 50 --batch 3 --device cuda --check
  step "cli kmeans --device cuda --exact-f32 --check" "$build/cli/tessera" kmeans \
    -g uniform:n=20000,d=128 -k 300 --init random --iterations 5 --device cuda --exact-f32 --check
  step "cli kmeans --device cuda --check (bf16 cosine)" "$build/cli/tessera" kmeans \
    -g uniform:n=20000,d=128 -k 300 --dtype bf16 --metric cosine --init random --device cuda --check
  step "cli kmeans --device cuda --check (bf16 l2 batch: norms in the first assignment, label keys)" \
    "$build/cli/tessera" kmeans -g blobs:n=60000,d=64,centers=100 -k 100 --batch 4 --dtype bf16 \
    --device cuda --check
  step "cli kmeans --device cuda --stream --check" "$build/cli/tessera" kmeans \
    -g blobs:n=40000,d=24,centers=30 -k 30 --batch 2 --dtype f16 --device cuda --stream \
    --stream-chunk 3000 --check
  step "cli demo" "$build/cli/tessera" demo
fi
echo; echo "=== gpu_check summary (commit ${TESSERA_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)})"
printf '%s\n' "${summary[@]}" | tee "$out/gpu_check_summary.txt"
! printf '%s\n' "${summary[@]}" | grep -q '^FAIL'
