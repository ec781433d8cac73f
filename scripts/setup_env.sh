#!/usr/bin/env bash
# Create (or bring up to date) a virtual environment with the pinned OpenMMLab stack.
#
#   scripts/setup_env.sh VENV REQUIREMENTS
#
# Idempotent: a stamp inside VENV records the hash of REQUIREMENTS and of this script;
# when both match, nothing is reinstalled.
#
# Environment:
#   PYTHON            interpreter for the venv (default: python3)
#   MMCV_FIND_LINKS   a pip --find-links page with prebuilt mmcv wheels (GPU users), e.g.
#                     https://download.openmmlab.com/mmcv/dist/cu121/torch2.1/index.html
#   MMCV_CXX_STD      C++ standard for the mmcv source build (default c++17; the modern
#                     stack needs c++20 because torch >= 2.10 headers use C++20 features)
#   BALLOONDET_WHEEL_CACHE  where the compiled mmcv wheel is kept between set-ups
#                     (default ~/.cache/balloondet/wheels)
set -euo pipefail

venv=${1:?usage: setup_env.sh VENV REQUIREMENTS}
req=${2:?usage: setup_env.sh VENV REQUIREMENTS}
python=${PYTHON:-python3}
cxx_std=${MMCV_CXX_STD:-c++17}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
wheel_cache=${BALLOONDET_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/balloondet/wheels}

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[setup] ERROR:\033[0m %s\n' "$*" >&2; exit 1; }

[[ -f $req ]] || die "requirements file not found: $req"
stamp="$venv/.balloondet-setup"
want=$(cat "$req" "$root/requirements-common.txt" "$here/setup_env.sh" "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)-$cxx_std-${MMCV_FIND_LINKS:-src}
if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
    say "$venv is up to date with $req (delete $stamp to force a reinstall)"
    exit 0
fi

start=$(date +%s)
if [[ ! -x $venv/bin/python ]]; then
    say "creating $venv with $($python --version 2>&1)"
    "$python" -m venv "$venv"
fi
py="$venv/bin/python"
pip=("$py" -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet --upgrade "pip>=23.2"

# 1. torch first: mmcv compiles against the torch it finds, without build isolation.
torch_block=$(sed -n '/^# --- torch block/,/^# --- end torch block/p' "$req" | grep -v '^#' | sed 's/#.*//' | xargs)
[[ -n $torch_block ]] || die "$req has no '# --- torch block' section"
say "step 1/4: $torch_block"
"${pip[@]}" install $torch_block

# 2. mmcv with compiled ops.
mmcv_pin=$(grep -E '^mmcv==' "$req" | sed 's/#.*//' | xargs)
mmcv_version=${mmcv_pin#mmcv==}
have_ops() {
    "$py" - "$mmcv_version" <<'PY' 2>/dev/null
import sys
import mmcv
from mmcv.ops import nms  # noqa: F401  (fails when mmcv was built without ops)
sys.exit(0 if mmcv.__version__ == sys.argv[1] else 1)
PY
}
if have_ops; then
    say "step 2/4: mmcv $mmcv_version with ops already installed"
elif [[ -n ${MMCV_FIND_LINKS:-} ]]; then
    say "step 2/4: mmcv $mmcv_version prebuilt from $MMCV_FIND_LINKS"
    "${pip[@]}" install "$mmcv_pin" --only-binary mmcv -f "$MMCV_FIND_LINKS"
else
    torch_version=$("$py" -c 'import torch; print(torch.__version__.split("+")[0])')
    pyver=$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    cache="$wheel_cache/mmcv-$mmcv_version-torch$torch_version-$pyver-$cxx_std-$(uname -m)"
    if ! ls "$cache"/mmcv-*.whl >/dev/null 2>&1; then
        say "step 2/4: compiling mmcv $mmcv_version with ops against torch $torch_version ($cxx_std)"
        say "          this takes about 8 minutes on 2 cores (13 with c++20); the wheel is cached in $cache"
        work=$(mktemp -d)
        trap 'rm -rf "$work"' EXIT
        "${pip[@]}" download --quiet --no-deps --no-build-isolation --no-binary mmcv "$mmcv_pin" -d "$work"
        tar -xzf "$work"/mmcv-*.tar.gz -C "$work"
        src=$(echo "$work"/mmcv-"$mmcv_version")
        if [[ $cxx_std != c++17 ]]; then
            # The only source change: the C++ standard passed to the compiler.
            grep -q -- '-std=c++17' "$src/setup.py" || die "mmcv setup.py no longer mentions -std=c++17: update the patch step"
            sed -i "s/-std=c++17/-std=$cxx_std/g" "$src/setup.py"
            say "          patched $src/setup.py: -std=c++17 -> -std=$cxx_std"
        fi
        MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
            "${pip[@]}" wheel --no-build-isolation --no-deps "$src" -w "$work/wheel"
        mkdir -p "$cache"
        mv "$work"/wheel/mmcv-*.whl "$cache/"
    else
        say "step 2/4: mmcv $mmcv_version from the cached wheel in $cache"
    fi
    "${pip[@]}" install --no-deps --force-reinstall "$cache"/mmcv-*.whl
    "${pip[@]}" install "$cache"/mmcv-*.whl  # its pure-Python dependencies (addict, yapf, ...)
fi

# 3. the rest, then this package (editable).
say "step 3/4: requirements and the balloondet package"
# Without the mmcv line: pip must never fall back to building mmcv's sdist under build isolation.
rest="$(dirname "$req")/.requirements-without-mmcv.txt"
grep -v '^mmcv==' "$req" > "$rest"
"${pip[@]}" install -r "$rest"
rm -f "$rest"
"${pip[@]}" install --no-deps --no-build-isolation -e "$root"

# 4. refuse to finish with an mmcv that has no compiled ops.
say "step 4/4: checking mmcv's compiled ops"
"$py" - <<'PY' || die "mmcv was installed WITHOUT its compiled ops (mmcv._ext). Rebuild it: delete $venv and the cached wheel, then run make again. Do not build it under pip's build isolation."
import torch
from mmcv.ops import nms
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
scores = torch.tensor([0.9, 0.8, 0.7])
_, keep = nms(boxes, scores, iou_threshold=0.5)
assert keep.tolist() == [0, 2], keep
import mmdet, mmengine, mmcv
print(f"torch {torch.__version__}, mmcv {mmcv.__version__} (ops OK), mmengine {mmengine.__version__}, mmdet {mmdet.__version__}")
PY

echo "$want" > "$stamp"
say "done in $(( $(date +%s) - start )) s: $venv"
