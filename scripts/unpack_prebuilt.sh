#!/usr/bin/env bash
# Unpacks .prebuilt/tessera.tar.xz (scripts/pack_prebuilt.sh) into .prebuilt/tree with Python's
# tarfile (no xz binary needed on the device).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .prebuilt/tree  # nothing left from an older package
python3 -c "import tarfile; tarfile.open('.prebuilt/tessera.tar.xz').extractall('.prebuilt')"
chmod +x .prebuilt/tree/*/*
echo "prebuilt binaries of commit $(cat .prebuilt/tree/COMMIT)"
