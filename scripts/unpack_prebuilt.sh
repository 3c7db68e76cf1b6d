#!/usr/bin/env bash
# Unpacks .prebuilt/tessera.tar.xz (scripts/pack_prebuilt.sh) into .prebuilt/tree, and a
# before.tar.xz beside it into .prebuilt/before/tree, with Python's tarfile (no xz binary needed on
# the device).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .prebuilt/tree  # nothing left from an older package
python3 -c "import tarfile; tarfile.open('.prebuilt/tessera.tar.xz').extractall('.prebuilt')"
chmod +x .prebuilt/tree/*/*
echo "prebuilt binaries of commit $(cat .prebuilt/tree/COMMIT)"
# The "before" side of an A/B (pack_prebuilt.sh --keep-before) goes to .prebuilt/before/tree.
if [ -f .prebuilt/before.tar.xz ]; then
  rm -rf .prebuilt/before && mkdir -p .prebuilt/before
  python3 -c "import tarfile; tarfile.open('.prebuilt/before.tar.xz').extractall('.prebuilt/before')"
  chmod +x .prebuilt/before/tree/*/*
  echo "before: prebuilt binaries of commit $(cat .prebuilt/before/tree/COMMIT)"
fi
