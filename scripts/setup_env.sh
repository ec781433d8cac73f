#!/usr/bin/env bash
# Create (or bring up to date) a virtual environment with the pinned OpenMMLab stack.
#
#   scripts/setup_env.sh VENV REQUIREMENTS
#
# Idempotent: a stamp inside VENV records the hash of the requirements and of the set-up
# scripts; when they match, nothing is reinstalled.
#
# Environment:
#   PYTHON            interpreter for the venv (default: python3)
#   SYSTEM_TORCH=1    the "system" stack: the venv sees the interpreter's packages
#                     (--system-site-packages) and keeps its torch, torchvision, numpy, opencv,
#                     matplotlib and scipy; only the OpenMMLab stack is installed, pinned
#   WHEELHOUSE        a folder of wheels (`make wheelhouse`): install from it alone, no index
#   BALLOONDET_DEV=0  skip the notebook and test tools (requirements-dev.txt)
#   MMCV_FIND_LINKS, MMCV_PREBUILT, MMCV_CXX_STD, TORCH_CUDA_ARCH_LIST, MAX_JOBS:
#                     how mmcv is installed, see scripts/install_mmcv.py
#   BALLOONDET_WHEEL_CACHE  where a compiled mmcv wheel is kept between set-ups
#                     (default ~/.cache/balloondet/wheels)
set -euo pipefail

venv=${1:?usage: setup_env.sh VENV REQUIREMENTS}
req=${2:?usage: setup_env.sh VENV REQUIREMENTS}
python=${PYTHON:-python3}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
wheel_cache=${BALLOONDET_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/balloondet/wheels}
system=${SYSTEM_TORCH:-0}
dev=${BALLOONDET_DEV:-1}

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

[[ -f $req ]] || die "requirements file not found: $req"
stamp="$venv/.balloondet-setup"
lock="${req%.txt}.lock"  # requirements.lock, requirements-modern.lock (make lock); the system stack has none
[[ -f $lock ]] || lock=""
want=$(cat "$req" "$root"/requirements*.txt ${lock:+"$lock"} "$here/setup_env.sh" "$here/install_mmcv.py" "$root/pyproject.toml" \
       | sha256sum | cut -d' ' -f1)-system$system-dev$dev-${MMCV_FIND_LINKS:-}-${WHEELHOUSE:+wheelhouse}
if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
    say "$venv is up to date with $req (delete $stamp to force a reinstall)"
    exit 0
fi

start=$(date +%s)
pip_from=()
if [[ -n ${WHEELHOUSE:-} ]]; then
    [[ -d $WHEELHOUSE ]] || die "WHEELHOUSE=$WHEELHOUSE is not a folder (make one with: make wheelhouse)"
    WHEELHOUSE=$(cd "$WHEELHOUSE" && pwd)
    export WHEELHOUSE
    pip_from=(--no-index --find-links "$WHEELHOUSE")
    say "installing from the wheelhouse $WHEELHOUSE only (no index)"
fi

if [[ $system == 1 ]]; then
    # The system stack keeps the interpreter's torch: refuse clearly when there is none, or too old a one.
    have=$("$python" -c 'import torch; print(torch.__version__)' 2>/dev/null) \
        || die "STACK=system needs an interpreter that has torch (>= 2.1); $python has none. Use STACK=default or STACK=modern, which install their own."
    "$python" - "$have" <<'PY' || die "STACK=system needs torch >= 2.1; $python has torch $have"
import re, sys
sys.exit(0 if tuple(int(p) for p in re.findall(r"\d+", sys.argv[1])[:2]) >= (2, 1) else 1)
PY
    say "system stack: keeping $python's torch $have"
fi

if [[ ! -x $venv/bin/python ]]; then
    say "creating $venv with $($python --version 2>&1)"
    if [[ $system == 1 ]]; then
        "$python" -m venv --system-site-packages "$venv"
        # --system-site-packages shows the *base* interpreter's packages; when PYTHON is itself a venv
        # (a docker image's /opt/.../.venv, conda), its own site-packages must be added by a .pth file.
        parent=$("$python" -c 'import site, sys; print("\n".join(site.getsitepackages()) if sys.prefix != sys.base_prefix else "")')
        if [[ -n $parent ]]; then
            own=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
            # addsitedir, not bare paths: the parent's own .pth files (setuptools' distutils shim, which
            # mmengine needs on Python 3.12) must run too
            "$venv/bin/python" - "$own/_balloondet_system_site.pth" $parent <<'PY'
import sys
from pathlib import Path
Path(sys.argv[1]).write_text("".join(f"import site; site.addsitedir({p!r})\n" for p in sys.argv[2:]))
PY
            say "the interpreter is a venv: its site-packages are visible through $own/_balloondet_system_site.pth"
        fi
    else
        "$python" -m venv "$venv"
    fi
fi
py="$venv/bin/python"
pip=("$py" -m pip --disable-pip-version-check)
[[ -n ${WHEELHOUSE:-} ]] || "${pip[@]}" install --quiet --upgrade "pip>=23.2"

# 1. torch first: mmcv compiles against the torch it finds, without build isolation. With a lock,
# everything but mmcv: each package once, at its locked version, its hash checked.
torch_block=$(sed -n '/^# --- torch block/,/^# --- end torch block/p' "$req" | { grep -v '^#' || true; } | sed 's/#.*//' | xargs)
if [[ $system == 1 ]]; then
    say "step 1/4: torch from the interpreter: $("$py" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)')"
elif [[ -n $lock ]]; then
    say "step 1/4: the $(grep -cE '^[A-Za-z0-9]' "$lock") locked packages of $lock (hashes checked)"
    # uv downloads in parallel: 33 s instead of pip's 120 s for the default lock, cold, on 2 cores
    uv_pin=$(grep -oE '^uv==[^ ;]+' "$lock" | head -1)
    if [[ -n $uv_pin ]] && "${pip[@]}" install --quiet "${pip_from[@]}" "$uv_pin" \
        && "$venv/bin/uv" pip install --python "$py" "${pip_from[@]}" --require-hashes --no-deps -r "$lock"; then
        :
    else
        say "uv could not install the lock; pip does it instead"
        "${pip[@]}" install "${pip_from[@]}" --require-hashes --no-deps -r "$lock"
    fi
else
    [[ -n $torch_block ]] || die "$req has no '# --- torch block' section"
    say "step 1/4: $torch_block"
    "${pip[@]}" install "${pip_from[@]}" $torch_block
fi

# 2. mmcv with compiled ops: a wheel from the wheelhouse, a find-links page, OpenMMLab's index, the cache, or compiled.
mmcv_version=$(grep -E '^mmcv==' "$req" | sed 's/#.*//; s/mmcv==//' | xargs)
[[ -n $mmcv_version ]] || die "$req pins no mmcv==VERSION"
ninja_pin=$(grep -oE '^ninja==[^ ;#]+' "$req" | head -1 || true)
if [[ $system == 1 && -n $ninja_pin ]]; then  # the lock stacks got it in step 1
    "${pip[@]}" install --quiet "${pip_from[@]}" "$ninja_pin"
fi
say "step 2/4: mmcv $mmcv_version with compiled ops"
"$py" "$here/install_mmcv.py" --version "$mmcv_version" --cache "$wheel_cache"

# 3. the rest, then this package (editable). Without the mmcv line: pip must never fall back to
# building mmcv's sdist under build isolation.
if [[ -n $lock ]]; then say "step 3/4: the balloondet package"; else say "step 3/4: requirements and the balloondet package"; fi
rest="$(dirname "$req")/.requirements-without-mmcv.txt"
grep -v '^mmcv==' "$req" > "$rest"
if [[ -n $lock ]]; then
    :  # all installed in step 1
elif [[ $system == 1 ]]; then
    # --no-deps: the list is complete, and the interpreter's opencv may be opencv-python-headless,
    # which pip would not count as the opencv-python that mmcv, mmengine and grad-cam ask for.
    "${pip[@]}" install "${pip_from[@]}" --no-deps -r "$rest"
    "$py" - <<'PY' || die "the interpreter lacks packages the system stack takes from it (above); install them there, or use STACK=default/modern"
import importlib.util, sys
needed = {"torchvision": "torchvision", "numpy": "numpy", "cv2": "opencv-python-headless", "matplotlib": "matplotlib",
          "scipy": "scipy", "PIL": "pillow", "yaml": "pyyaml", "tqdm": "tqdm", "rich": "rich",
          "packaging": "packaging", "six": "six", "sklearn": "scikit-learn"}
missing = [pkg for mod, pkg in needed.items() if importlib.util.find_spec(mod) is None]
if missing:
    print("[setup] missing from the interpreter: " + " ".join(missing), file=sys.stderr)
sys.exit(1 if missing else 0)
PY
else
    "${pip[@]}" install "${pip_from[@]}" -r "$rest"
fi
rm -f "$rest"
if [[ $dev == 1 && -z $lock ]]; then
    "${pip[@]}" install "${pip_from[@]}" -r "$root/requirements-dev.txt"
fi
"${pip[@]}" install --no-deps --no-build-isolation -e "$root"
if [[ -n $lock ]]; then
    "${pip[@]}" check || die "$lock is incomplete or inconsistent (pip check above): regenerate it with make lock"
fi

# 4. refuse to finish with an mmcv that has no compiled ops.
say "step 4/4: checking mmcv's compiled ops"
"$py" - <<'PY' || die "mmcv was installed WITHOUT its compiled ops (mmcv._ext). Delete $venv and the cached wheel in $wheel_cache, then run make again."
import torch
from mmcv.ops import nms
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
scores = torch.tensor([0.9, 0.8, 0.7])
_, keep = nms(boxes, scores, iou_threshold=0.5)
assert keep.tolist() == [0, 2], keep
cuda = ""
if torch.cuda.is_available():
    _, keep = nms(boxes.cuda(), scores.cuda(), iou_threshold=0.5)
    assert keep.tolist() == [0, 2], keep
    cuda = f", CUDA ops OK on {torch.cuda.get_device_name(0)}"
import mmdet, mmengine, mmcv
print(f"torch {torch.__version__}, mmcv {mmcv.__version__} (ops OK{cuda}), mmengine {mmengine.__version__}, mmdet {mmdet.__version__}")
PY

echo "$want" > "$stamp"
say "done in $(( $(date +%s) - start )) s: $venv"
