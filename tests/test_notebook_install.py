"""run.ipynb sets itself up in a bare kernel (Colab, Kaggle): torch kept, the rest installed, nothing compiled."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO


def lock_constraints(path: Path) -> str:
    """requirements.lock's pins without hashes, as a constraints file (markers kept)."""
    lines = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*==[^ \\\n]+(?:\s*;[^\\\n]*)?)", path.read_text(), re.M)
    return "\n".join(line.strip() for line in lines) + "\n"


def test_missing_lists_what_the_interpreter_lacks(tmp_path):
    """``--missing`` (setup_env.sh's system-stack check): this venv lacks nothing, a bare venv lacks torch on."""
    script = str(REPO / "scripts" / "notebook_install.py")
    done = subprocess.run([sys.executable, script, "--missing"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    bare = tmp_path / "bare"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(bare)],
                   check=True)
    done = subprocess.run([str(bare / "bin" / "python"), script, "--missing"], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.startswith("missing from the interpreter: torch torchvision numpy opencv-python"), done.stderr
    # run.ipynb's first cell calls main() with no argument, in the kernel: that is the install, here refused
    # at once because the bare venv has no torch
    code = f"import runpy; raise SystemExit(runpy.run_path({script!r})['main']())"
    called = subprocess.run([str(bare / "bin" / "python"), "-c", code], capture_output=True, text=True)
    assert called.returncode == 1 and "this kernel has no torch" in called.stdout, called.stdout + called.stderr


@pytest.mark.notebook
def test_run_notebook_installs_balloondet_into_a_bare_kernel(tmp_path):
    venv = tmp_path / "kernel-venv"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(PATH=f"{venv / 'bin'}:{env.get('PATH', '')}", BALLOONDET_NOTEBOOK_INSTALL="1", MPLBACKEND="Agg")
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(lock_constraints(REPO / "requirements.lock"))
    # only what a hosted notebook brings: torch, torchvision and a kernel (papermill runs it here)
    uv = Path(sys.executable).with_name("uv")
    subprocess.run([str(uv), "pip", "install", "--quiet", "--python", str(py), "-c", str(constraints),
                    "torch", "torchvision", "ipykernel", "papermill"], check=True, timeout=900)
    for module in ("balloondet", "mmcv"):  # not there before the notebook runs
        assert subprocess.run([str(py), "-c", f"import {module}"], capture_output=True, env=env).returncode != 0
    out = tmp_path / "run.ipynb"
    params = {"synthetic": True, "data_root": str(tmp_path / "data"), "config": "rtmdet_tiny_smoke_synthetic",
              "epochs": 1, "device": "cpu", "work_dir": str(tmp_path / "run"), "figures_dir": str(tmp_path / "figs")}
    (tmp_path / "figs").mkdir()
    cmd = [str(py), "-m", "papermill", str(REPO / "run.ipynb"), str(out), "--cwd", str(REPO), "-k", "python3",
           "--no-progress-bar", "-y", json.dumps(params)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-4000:]

    cells = json.loads(out.read_text())["cells"]
    setup_text = "".join("".join(o.get("text", "")) for o in cells[1]["outputs"])  # the first code cell
    assert "keeping this kernel's torch 2.14.1" in setup_text and "done in" in setup_text, setup_text
    texts = ["".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/markdown", ""))
             for c in cells for o in c.get("outputs", [])]
    assert any("| bbox_mAP |" in t for t in texts)  # it went on to train and test in the same kernel
    code = "import balloondet, mmcv._ext; print(balloondet.__file__, mmcv._ext.BACKEND)"
    check = subprocess.run([str(py), "-c", code],
                           capture_output=True, text=True, env=env)
    assert "site-packages" in check.stdout and "torchvision" in check.stdout, check.stderr
    assert subprocess.run([str(py), "-m", "pip", "check"], capture_output=True, env=env).returncode == 0
