#!/usr/bin/env bash
# Every wheel a stack needs besides what the target interpreter already has, for a machine without
# an index (`make wheelhouse`): then `WHEELHOUSE=DIR make test|run` installs from the folder alone.
#
#   scripts/wheelhouse.sh REQUIREMENTS DEST PYTHON_VERSION [DEV]
#
# REQUIREMENTS' pins are fetched without their dependencies (the stack files list them all), as
# wheels for CPython PYTHON_VERSION on manylinux x86_64 (mmcv-lite is pure Python: nothing to compile
# there). A pin with no wheel on the index (grad-cam) is built here into a pure-Python wheel. DEV=1 adds requirements-dev.txt
# with its dependencies (notebooks and tests; about 40 MB more).
set -euo pipefail
req=${1:?usage: wheelhouse.sh REQUIREMENTS DEST PYTHON_VERSION [DEV]}
dest=${2:?}
pyver=${3:?}
dev=${4:-0}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${PYTHON:-python3}
abi="cp${pyver/./}"
target=(--only-binary=:all: --python-version "$pyver" --implementation cp --abi "$abi" --abi abi3 --abi none
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
pip=("$python" -m pip --disable-pip-version-check)
mkdir -p "$dest"

# the pins of REQUIREMENTS and the files it includes
pins=$("$python" - "$req" <<'PY'
import re, sys
from pathlib import Path
def pins(path):
    lines = Path(path).read_text().splitlines()
    in_torch = False
    for line in lines:
        s = line.split("#")[0].strip() if not line.startswith("# ---") else line
        if line.startswith("# --- torch block"): in_torch = True; continue
        if line.startswith("# --- end torch block"): in_torch = False; continue
        if not s or in_torch: continue
        if s.startswith("-r "): yield from pins(Path(path).parent / s[3:].strip()); continue
        yield s
print("\n".join(pins(sys.argv[1])))
PY
)
while IFS= read -r pin; do
    [[ -n $pin ]] || continue
    if ! "${pip[@]}" download --quiet --no-deps "${target[@]}" -d "$dest" "$pin" 2>/dev/null; then
        echo "[wheelhouse] $pin has no wheel for cp${pyver/./}: building one here"
        "${pip[@]}" wheel --quiet --no-deps -w "$dest" "$pin"
    fi
done <<< "$pins"
if [[ $dev == 1 ]]; then
    "${pip[@]}" download --quiet "${target[@]}" -d "$dest" -r "$here/../requirements-dev.txt"
fi
echo "[wheelhouse] $(ls "$dest" | wc -l) files, $(du -sh "$dest" | cut -f1) in $dest"
