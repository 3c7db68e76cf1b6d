#!/usr/bin/env bash
# Session driver (untracked): csr.nnz_split at the final commit: tests, memcheck, CLI, listed run.
set -uo pipefail
mkdir -p $OUT/r
bash scripts/unpack_prebuilt.sh
T=.prebuilt/tree
export TESSERA_DATA=$PWD/.data
{
echo "=== test_gpu_ops"; $T/tests/test_gpu_ops --gtest_brief=1 2>&1 | tail -4; echo "rc=${PIPESTATUS[0]}"
echo "=== test_gpu_real_matrices"; $T/tests/test_gpu_real_matrices --gtest_brief=1 2>&1 | tail -3; echo "rc=${PIPESTATUS[0]}"
echo "=== memcheck test_gpu_ops, CSR SpMM of the 16-bit types and the schedule rejections"
compute-sanitizer --tool memcheck --error-exitcode 1 --leak-check full $T/tests/test_gpu_ops --gtest_brief=1 \
  --gtest_filter='GpuOps/2.SpmmCsr*:GpuOps/3.SpmmCsr*:GpuOps.Schedule*:GpuOps.Deterministic*' 2>&1 | tail -5
for args in "spmm --generate rmat:scale=16 --features 32 --dtype bf16 --device cuda --schedule csr.nnz_split --check" \
            "spmm --generate rmat:scale=16 --features 64 --dtype f16 --itype i64 --device cuda --schedule csr.nnz_split:g=4,ept=0 --check" \
            "spmm --generate rmat:scale=16 --features 32 --dtype bf16 --device cuda --schedule csr.nnz_split --deterministic" \
            "spmm --generate rmat:scale=16 --features 32 --device cuda --schedule csr.nnz_split"; do
  echo "=== tessera $args"; $T/cli/tessera $args 2>&1 | tail -3; echo "rc=${PIPESTATUS[0]}"
done
$T/bench/spmm_gpu --only reddit-like,products-like,reddit-like-local,products-like-local --features 32 \
  --sweep-reps 5 --reps 20 --out $OUT/r --schedules "csr.nnz_split:g=8,ept=0;csr.nnz_split:g=8,ept=512;csr.nnz_split:g=8,ept=1024;csr.nnz_split:g=4,ept=512" 2>&1 | grep -v "^note"
} 2>&1 | tee $OUT/r/nnz_split_final.txt
tar -C $OUT -czf $OUT/r.tgz r && rm -rf $OUT/r
