#!/usr/bin/env bash
# Per-kernel machine-code statistics of one CUDA source, on the development machine (no GPU
# needed): registers and spills from ptxas, then SASS instruction counts (all, and the local
# loads/stores, global loads and shuffles that usually decide a memory-bound kernel's cost) from
# cuobjdump. The CUDA toolkit here has no cuobjdump; the script fetches NVIDIA's PyPI wheels
# (nvidia-cuda-cuobjdump and the nvdisasm it runs) into ~/.cache/tessera once. Nsight Compute on the GPU found that the
# merge-path SpMM spent 8 instructions a gathered row on 64-bit address arithmetic; this shows
# such things before a device run.
# Usage: scripts/sass_stats.sh FILE.cu [kernel-name-regex] [arch, default sm_90a]
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:?usage: scripts/sass_stats.sh FILE.cu [kernel-regex] [arch]}
pattern=${2:-.}
arch=${3:-sm_90a}
nvcc=${NVCC:-/usr/local/cuda/bin/nvcc}
tools=${HOME}/.cache/tessera/cuobjdump
# cuobjdump and nvdisasm from the toolkit, else from the cached wheels (fetched when missing).
bin=$(dirname "$(command -v cuobjdump 2>/dev/null || echo /nonexistent/x)")
if [ ! -x "$bin/cuobjdump" ] || [ ! -x "$bin/nvdisasm" ]; then
  bin=$(dirname "$(find "$tools" -name cuobjdump -type f 2>/dev/null | head -1 || true)")
  if [ ! -x "$bin/cuobjdump" ] || [ ! -x "$bin/nvdisasm" ]; then
    rm -rf "$tools" && mkdir -p "$tools"
    python3 -m pip download --no-deps -q nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm -d "$tools"
    for wheel in "$tools"/*.whl; do python3 -m zipfile -e "$wheel" "$tools/x"; done
    bin=$(dirname "$(find "$tools" -name cuobjdump -type f | head -1)")
    chmod +x "$bin"/*
  fi
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$nvcc" -DTESSERA_WITH_CUDA=1 -I. -isystem=/usr/local/cuda/include -O3 -DNDEBUG -arch="$arch" -cubin \
  --expt-relaxed-constexpr -std=c++17 -x cu -Xptxas -v "$src" -o "$work/k.cubin" 2> "$work/ptxas.txt"
PATH="$bin:$PATH" "$bin/cuobjdump" -sass "$work/k.cubin" > "$work/k.sass"
python3 - "$work" "$pattern" <<'EOF'
import re, subprocess, sys
work, pattern = sys.argv[1], re.compile(sys.argv[2])
def demangle(name):
    try:
        return subprocess.run(["c++filt", name], capture_output=True, text=True).stdout.strip() or name
    except OSError:
        return name
regs = {}
name = None
for line in open(f"{work}/ptxas.txt"):
    m = re.search(r"Compiling entry function '(\w+)'", line)
    if m:
        name = m.group(1)
    m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
    if m and name:
        regs.setdefault(name, {})["stack/spill st/ld"] = "/".join(m.groups())
    m = re.search(r"Used (\d+) registers", line)
    if m and name:
        regs.setdefault(name, {})["registers"] = m.group(1)
print(f"{'regs':>4} {'stack/st/ld':>12} {'instrs':>6} {'LDL/STL':>7} {'LDG':>4} {'SHFL':>4}  kernel")
for part in re.split(r"\n\s*Function : ", open(f"{work}/k.sass").read())[1:]:
    mangled = part.split("\n")[0].strip()
    pretty = demangle(mangled)
    if not pattern.search(pretty):
        continue
    ops = [i.split()[1] if i.startswith("@") else i.split()[0]
           for i in re.findall(r"/\*[0-9a-f]{4,}\*/\s+([^;]*);", part)]
    count = lambda prefix: sum(o.startswith(prefix) for o in ops)
    info = regs.get(mangled, {})
    short = re.sub(r"^void |tessera::ops::|\(anonymous namespace\)::|cuda::|tessera::", "", pretty)
    short = re.sub(r"\((\w+)\)(-?\d+)", r"\1=\2", short).split("(")[0]  # "(Walk)2" -> "Walk=2"
    print(f"{info.get('registers', '?'):>4} {info.get('stack/spill st/ld', '?'):>12} "
          f"{len(ops):>6} {count('LDL') + count('STL'):>7} {count('LDG'):>4} {count('SHFL'):>4}  {short}")
EOF
