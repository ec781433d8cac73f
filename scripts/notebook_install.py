"""Install balloondet into the running notebook kernel's environment, keeping its torch (Colab, Kaggle).

    python scripts/notebook_install.py            # run by run.ipynb's first cell, with the kernel's interpreter
    python scripts/notebook_install.py --missing  # only list what the interpreter lacks (setup_env.sh, STACK=system)

The system stack (requirements-system.txt: mmcv-lite, mmengine, mmdet, grad-cam, pycocotools and
what they need) is installed with --no-deps on top of the interpreter's torch and torchvision;
what the system stack takes from the interpreter (numpy, opencv, matplotlib, scipy...) is added
where missing, at requirements.lock's versions; then mmcv_ext/ (mmcv's nms from torchvision) and
this package, not editable, so that the running kernel imports them without a restart. Nothing is
compiled. Standard library only: balloondet is not importable yet.
"""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# module -> distribution, for what requirements-system.txt expects the interpreter to have (beside torch,
# torchvision); the one list, used here and by setup_env.sh's system stack (--missing)
FROM_INTERPRETER = {"numpy": "numpy", "cv2": "opencv-python", "matplotlib": "matplotlib", "scipy": "scipy",
                    "PIL": "pillow", "yaml": "pyyaml", "tqdm": "tqdm", "rich": "rich", "packaging": "packaging",
                    "six": "six", "sklearn": "scikit-learn"}
TORCH = ("torch", "torchvision")  # the kernel's, kept; without them nothing is installed
# never touched: the kernel's own torch, and the CUDA libraries that come with it
KEEP = re.compile(r"^(torch|torchvision|torchaudio|triton|nvidia-.*|cuda-.*)$")


def say(msg: str) -> None:
    print(f"[notebook set-up] {msg}", flush=True)


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--quiet", *args],
                   check=True)


def constraints(lock: Path) -> str:
    """requirements.lock's versions (hashes dropped) for every package but torch's own."""
    lines = []
    for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)(\s*;[^\\\n]*)?", lock.read_text(), re.M):
        name = re.sub(r"[-_.]+", "-", m.group(1).lower())
        if not KEEP.match(name):
            lines.append(f"{m.group(1)}=={m.group(2)}{m.group(3) or ''}")
    return "\n".join(lines) + "\n"


def missing_from_interpreter() -> list[str]:
    """The distributions of FROM_INTERPRETER whose module this interpreter cannot import."""
    return [dist for module, dist in FROM_INTERPRETER.items() if importlib.util.find_spec(module) is None]


def main(argv: list[str] | None = None) -> int:
    """Install (no arguments: what run.ipynb's first cell calls in the kernel), or ``--missing``."""
    argv = argv or []
    if argv == ["--missing"]:
        torch_missing = [m for m in TORCH if importlib.util.find_spec(m) is None]
        missing = torch_missing + missing_from_interpreter()
        if missing:
            print("missing from the interpreter: " + " ".join(missing), file=sys.stderr)
        return 1 if missing else 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    start = time.monotonic()
    for module in TORCH:
        if importlib.util.find_spec(module) is None:
            say(f"this kernel has no {module}: install torch and torchvision first, or set up with `make notebook`")
            return 1
    import torch

    say(f"keeping this kernel's torch {torch.__version__}; installing the rest (nothing is compiled)")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(constraints(ROOT / "requirements.lock"))
    missing = missing_from_interpreter()
    if missing:
        say(f"adding what the kernel lacks: {' '.join(missing)}")
        pip("-c", f.name, *missing)
    pip("--no-deps", "-r", str(ROOT / "requirements-system.txt"))
    pip("--no-deps", "--no-build-isolation", str(ROOT / "mmcv_ext"), str(ROOT))
    Path(f.name).unlink()
    say(f"done in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
