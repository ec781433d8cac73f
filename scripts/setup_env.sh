#!/usr/bin/env bash
# Create (or bring up to date) the virtual environment: the locked stack, mmcv's nms, this package.
#
#   scripts/setup_env.sh VENV
#
# Nothing is compiled. Idempotent: a stamp inside VENV records the hash of the requirements and of
# the set-up files; when they match, nothing is reinstalled.
#
# Environment:
#   PYTHON            interpreter for the venv (default: python3; 3.11-3.13)
#   SYSTEM_TORCH=1    the "system" stack: the venv sees the interpreter's packages
#                     (--system-site-packages) and keeps its torch, torchvision, numpy, opencv,
#                     matplotlib and scipy; only requirements-system.txt is installed, pinned
#   WHEELHOUSE        a folder of wheels (`make wheelhouse`): install from it alone, no index
#   BALLOONDET_DEV=0  skip the notebook and test tools (requirements-dev.txt)
#   MMCV=compiled     replace mmcv-lite by mmcv 2.1.0 compiled against the venv's torch, with every op
#                     (RoIAlign, deformable conv, ...; minutes to an hour): scripts/install_mmcv.py
set -euo pipefail

venv=${1:?usage: setup_env.sh VENV}
python=${PYTHON:-python3}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
system=${SYSTEM_TORCH:-0}
dev=${BALLOONDET_DEV:-1}
mmcv_kind=${MMCV:-lite}

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

[[ $mmcv_kind == lite || $mmcv_kind == compiled ]] || die "MMCV=$mmcv_kind: use lite (the default) or compiled"
if [[ $system == 1 ]]; then req=$root/requirements-system.txt; lock=""; else req=$root/requirements.txt; lock=$root/requirements.lock; fi
stamp="$venv/.balloondet-setup"
want=$(cat "$root"/requirements*.txt ${lock:+"$lock"} "$here/setup_env.sh" "$root/pyproject.toml" \
       "$root"/mmcv_ext/pyproject.toml "$root"/mmcv_ext/mmcv/_ext.py | sha256sum | cut -d' ' -f1)-system$system-dev$dev-mmcv$mmcv_kind-${WHEELHOUSE:+wheelhouse}
if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
    say "$venv is up to date (delete $stamp to force a reinstall)"
    exit 0
fi

"$python" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 13) else 1)' \
    || die "$python is Python $("$python" -c 'import platform; print(platform.python_version())'); the stack needs 3.11-3.13 (PYTHON=python3.12 make ...)"
start=$(date +%s)
pip_from=()
if [[ -n ${WHEELHOUSE:-} ]]; then
    [[ -d $WHEELHOUSE ]] || die "WHEELHOUSE=$WHEELHOUSE is not a folder (make one with: make wheelhouse)"
    WHEELHOUSE=$(cd "$WHEELHOUSE" && pwd)
    pip_from=(--no-index --find-links "$WHEELHOUSE")
    say "installing from the wheelhouse $WHEELHOUSE only (no index)"
fi

if [[ $system == 1 ]]; then
    # The system stack keeps the interpreter's torch: refuse clearly when there is none, or too old a one.
    have=$("$python" -c 'import torch, torchvision; print(torch.__version__)' 2>/dev/null) \
        || die "STACK=system needs an interpreter that has torch (>= 2.1) and torchvision; $python lacks them. Use the default stack, which installs its own."
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

# 1. the stack: the lock (hashes checked, each package once), or the system stack's list
if [[ -n $lock ]]; then
    say "step 1/3: the $(grep -cE '^[A-Za-z0-9]' "$lock") locked packages of requirements.lock (hashes checked)"
    # uv downloads in parallel (the lock in about 45 s cold on 2 cores, pip 90 s or more). uv does not read
    # pip's configuration: a machine's own mirror or wheel folder (pip.conf, PIP_*) is handed to it.
    uv_pin=$(grep -oE '^uv==[^ ;]+' "$lock" | head -1)
    uv_from=("${pip_from[@]}")
    if [[ -z ${WHEELHOUSE:-} ]]; then
        for key in global.index-url global.extra-index-url global.find-links; do
            for url in $("${pip[@]}" config get "$key" 2>/dev/null || true); do
                case $key in *index-url) [[ $key == global.index-url ]] && uv_from+=(--default-index "$url") || uv_from+=(--index "$url");;
                              *) uv_from+=(--find-links "$url");; esac
            done
        done
        [[ -n ${PIP_FIND_LINKS:-} ]] && for url in $PIP_FIND_LINKS; do uv_from+=(--find-links "$url"); done
    fi
    if "${pip[@]}" install --quiet "${pip_from[@]}" "$uv_pin" \
        && "$venv/bin/uv" pip install --python "$py" "${uv_from[@]}" --index-strategy unsafe-best-match \
               --require-hashes --no-deps -r "$lock"; then
        :
    else
        say "uv could not install the lock; pip does it instead"
        "${pip[@]}" install "${pip_from[@]}" --require-hashes --no-deps -r "$lock"
    fi
else
    # --no-deps: the list is complete, and the interpreter's opencv may be opencv-python-headless,
    # which pip would not count as the opencv-python that mmcv, mmengine and grad-cam ask for.
    say "step 1/3: requirements-system.txt on the interpreter's torch"
    "${pip[@]}" install "${pip_from[@]}" --no-deps -r "$req"
    "$py" "$here/notebook_install.py" --missing \
        || die "the interpreter lacks packages the system stack takes from it (above); install them there, or use the default stack"
    if [[ $dev == 1 ]]; then
        "${pip[@]}" install "${pip_from[@]}" -r "$root/requirements-dev.txt"
    fi
fi

# 2. mmcv's one compiled op, nms, from torchvision (mmcv_ext/); this package, editable
say "step 2/3: mmcv._ext from torchvision (mmcv_ext/) and the balloondet package"
"${pip[@]}" install --quiet --no-deps --no-build-isolation "$root/mmcv_ext"
"${pip[@]}" install --quiet --no-deps --no-build-isolation -e "$root"
if [[ $mmcv_kind == compiled ]]; then
    say "MMCV=compiled: mmcv 2.1.0 with every compiled op, built against this torch (minutes to an hour)"
    "${pip[@]}" uninstall --yes --quiet mmcv-lite balloondet-mmcv-ext
    "${pip[@]}" install --quiet "${pip_from[@]}" ninja==1.13.0 "setuptools<81" wheel
    "$py" "$here/install_mmcv.py" --version 2.1.0 --cache "${XDG_CACHE_HOME:-$HOME/.cache}/balloondet/wheels"
fi
if [[ -n $lock && $mmcv_kind == lite ]]; then
    "${pip[@]}" check || die "requirements.lock is incomplete or inconsistent (pip check above): regenerate it with make lock"
fi

# 3. refuse to finish with an mmcv whose nms does not work
say "step 3/3: checking mmcv's nms"
"$py" - <<'PY' || die "mmcv.ops.nms does not work in $venv (above). Delete $venv, then run make again."
import torch
import mmcv._ext
from mmcv.ops import nms
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
scores = torch.tensor([0.9, 0.8, 0.7])
_, keep = nms(boxes, scores, iou_threshold=0.5)
assert keep.tolist() == [0, 2], keep
cuda = ""
if torch.cuda.is_available():
    _, keep = nms(boxes.cuda(), scores.cuda(), iou_threshold=0.5)
    assert keep.tolist() == [0, 2], keep
    cuda = f", CUDA OK on {torch.cuda.get_device_name(0)}"
backend = getattr(mmcv._ext, "BACKEND", "compiled mmcv")
import mmdet, mmengine, mmcv
print(f"torch {torch.__version__}, mmcv {mmcv.__version__} (nms from {backend}{cuda}), mmengine {mmengine.__version__}, mmdet {mmdet.__version__}")
PY

echo "$want" > "$stamp"
say "done in $(( $(date +%s) - start )) s: $venv"
