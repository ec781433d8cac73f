"""Set-up: the lock, and the opt-in compiled mmcv (`MMCV=compiled`, scripts/install_mmcv.py): C++ standard, CUDA
ops, and the order of sources."""
import importlib.util
import re
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

spec = importlib.util.spec_from_file_location("install_mmcv", REPO / "scripts" / "install_mmcv.py")
install_mmcv = importlib.util.module_from_spec(spec)
sys.modules["install_mmcv"] = install_mmcv  # dataclasses look their module up
spec.loader.exec_module(install_mmcv)
Facts = install_mmcv.Facts


@pytest.mark.parametrize("torch_version, std", [
    ("2.1.2", "c++17"), ("2.1.2+cu121", "c++17"), ("2.9.1", "c++17"),
    ("2.10.0", "c++20"), ("2.11.0+cu130", "c++20"), ("2.14.1", "c++20"),
])
def test_cxx_standard_follows_torch(torch_version, std):
    assert install_mmcv.cxx_std_for(torch_version) == std
    facts = Facts(torch_version, None, "cp311", cores=2)
    assert install_mmcv.source_build(facts, {}).cxx_std == std
    assert install_mmcv.source_build(facts, {"MMCV_CXX_STD": "c++23"}).cxx_std == "c++23"  # an override wins


def test_openmmlab_index_only_where_wheels_are_published():
    base = "https://download.openmmlab.com/mmcv/dist"
    assert install_mmcv.openmmlab_index("2.1.0", "2.1.2+cu121", "12.1") == f"{base}/cu121/torch2.1/index.html"
    assert install_mmcv.openmmlab_index("2.1.0", "2.1.2", "11.8", base="http://x/") == "http://x/cu118/torch2.1/index.html"
    assert install_mmcv.openmmlab_index("2.1.0", "2.1.2+cpu", None) is None  # a CPU build: compile
    assert install_mmcv.openmmlab_index("2.1.0", "2.11.0+cu130", "13.0") is None  # nothing for torch 2.11
    assert install_mmcv.openmmlab_index("2.1.0", "2.1.2", "12.4") is None  # no cu124 wheels for torch 2.1


def test_plan_order():
    env = {"WHEELHOUSE": "/wh", "MMCV_FIND_LINKS": "https://example/links.html"}
    cuda21 = Facts("2.1.2+cu121", "12.1", "cp311", nvcc=None, cores=2)
    kinds = [k for k, _ in install_mmcv.plan("2.1.0", cuda21, env, Path("/cache"))]
    assert kinds == ["wheelhouse", "find-links", "openmmlab", "cache", "source"]
    kinds = [k for k, _ in install_mmcv.plan("2.1.0", cuda21, {"MMCV_PREBUILT": "0"}, Path("/cache"))]
    assert kinds == ["cache", "source"]
    cpu = Facts("2.1.2+cpu", None, "cp311", cores=2)
    assert [k for k, _ in install_mmcv.plan("2.1.0", cpu, {}, Path("/cache"))] == ["cache", "source"]


def test_cuda_ops_need_nvcc_and_an_architecture():
    gpu = Facts("2.11.0+cu130", "13.0", "cp312", nvcc="/cuda/bin/nvcc", gpu_arch="9.0", cores=16)
    build = install_mmcv.source_build(gpu, {})
    assert build.env["FORCE_CUDA"] == "1" and build.env["TORCH_CUDA_ARCH_LIST"] == "9.0"
    assert build.env["MAX_JOBS"] == "16" and build.env["CUDA_HOME"] == "/cuda" and build.cxx_std == "c++20"
    assert "-g0" in build.env["CFLAGS"]  # no debug info: a quarter of the size, faster to build
    assert install_mmcv.source_build(gpu, {"TORCH_CUDA_ARCH_LIST": "8.0;9.0"}).env["TORCH_CUDA_ARCH_LIST"] == "8.0;9.0"
    # a GPU-less build machine can still build CUDA ops when told the architecture
    blind = Facts("2.11.0+cu130", "13.0", "cp312", nvcc="/cuda/bin/nvcc", gpu_arch=None, cores=2)
    assert install_mmcv.source_build(blind, {"TORCH_CUDA_ARCH_LIST": "9.0"}).kind == "cuda-9.0"
    cpu_only = install_mmcv.source_build(blind, {})
    assert cpu_only.kind == "cpu" and "no GPU is visible" in cpu_only.why
    # no nvcc (most GPU machines): CPU ops, with the GPU hidden from mmcv's setup.py, which would try CUDA
    no_nvcc = install_mmcv.source_build(Facts("2.1.2+cu121", "12.1", "cp311", nvcc=None, gpu_arch="8.6"), {})
    assert no_nvcc.kind == "cpu" and no_nvcc.env["CUDA_VISIBLE_DEVICES"] == "" and no_nvcc.env["FORCE_CUDA"] == "0"
    # CUDA and CPU builds are cached apart
    root = Path("/c")
    assert install_mmcv.cache_dir(root, "2.1.0", gpu, build) != install_mmcv.cache_dir(root, "2.1.0", gpu, no_nvcc)


def fake_wheel(folder: Path) -> Path:
    """A minimal valid wheel named mmcv 2.1.0, for pip to find on a find-links page."""
    path = folder / "mmcv-2.1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mmcv/__init__.py", "")
        zf.writestr("mmcv-2.1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: mmcv\nVersion: 2.1.0\n")
        zf.writestr("mmcv-2.1.0.dist-info/WHEEL",
                    "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr("mmcv-2.1.0.dist-info/RECORD", "")
    return path


@pytest.mark.parametrize("published", [True, False])
def test_prebuilt_index_first_then_source(tmp_path, http_server, monkeypatch, published):
    """torch 2.1 + CUDA: OpenMMLab's page (here a loopback copy) first; the source build only when it has no wheel."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip looks at the loopback page alone
    site = tmp_path / "site"
    page = site / "cu121" / "torch2.1"
    page.mkdir(parents=True)
    links = ""
    if published:
        links = f'<a href="{fake_wheel(page).name}">{fake_wheel(page).name}</a>'
    (page / "index.html").write_text(f"<html><body>{links}</body></html>")
    base = http_server(site)
    calls = []

    def install_wheel(wheel, version):
        calls.append(("install", wheel.name))
        return True

    def build(version, settings, dest, wheelhouse):
        calls.append(("build", settings.kind))
        dest.mkdir(parents=True, exist_ok=True)
        return fake_wheel(dest)

    facts = Facts("2.1.2+cu121", "12.1", "cp311", nvcc=None, gpu_arch="8.6", cores=2)
    used = install_mmcv.install("2.1.0", tmp_path / "cache", {"MMCV_INDEX_BASE": base}, facts,
                                install_wheel=install_wheel, build=build)
    if published:
        assert used == "openmmlab" and calls == [("install", "mmcv-2.1.0-py3-none-any.whl")]
    else:
        assert used == "source" and calls == [("build", "cpu"), ("install", "mmcv-2.1.0-py3-none-any.whl")]
        # the next set-up finds the compiled wheel in the cache and compiles nothing
        calls.clear()
        used = install_mmcv.install("2.1.0", tmp_path / "cache", {"MMCV_INDEX_BASE": base}, facts,
                                    install_wheel=install_wheel, build=build)
        assert used == "cache" and calls == [("install", "mmcv-2.1.0-py3-none-any.whl")]


def test_wheelhouse_wheel_is_used_offline(tmp_path, monkeypatch):
    house = tmp_path / "wheelhouse"
    house.mkdir()
    fake_wheel(house)
    installed = []
    used = install_mmcv.install("2.1.0", tmp_path / "cache", {"WHEELHOUSE": str(house)},
                                Facts("2.11.0+cu130", "13.0", "cp312", cores=2),
                                install_wheel=lambda w, v: installed.append(w.name) or True,
                                build=lambda *a: pytest.fail("compiled although the wheelhouse had a wheel"))
    assert used == "wheelhouse" and installed == ["mmcv-2.1.0-py3-none-any.whl"]


def pins(path: Path) -> dict:
    """name -> version of every `name==version` in a requirements file and the files it includes."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            found.update(pins(path.parent / line[3:].strip()))
        elif "==" in line and ";" not in line:
            name, version = line.split("==")
            found[re.sub(r"[-_.]+", "-", name.strip().lower())] = version.strip()
    return found


def locked(path: Path) -> dict:
    """name -> set of versions in a uv lock (a universal lock may hold several, one per marker)."""
    found: dict = {}
    for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)", path.read_text(), re.M):
        found.setdefault(re.sub(r"[-_.]+", "-", m.group(1).lower()), set()).add(m.group(2))
    return found


def test_lock_agrees_with_every_pin():
    """`make lock` regenerates the lock; a pin changed without it fails here."""
    wanted = {**pins(REPO / "requirements.txt"), **pins(REPO / "requirements-dev.txt")}
    assert wanted["mmcv-lite"] == "2.1.0" and "mmcv" not in wanted  # nothing to compile
    have = locked(REPO / "requirements.lock")
    assert "mmcv" not in have and "balloondet" not in have and "ninja" not in have
    wrong = {name: (version, have.get(name)) for name, version in wanted.items() if have.get(name) != {version}}
    assert not wrong, f"requirements.lock disagrees with the pins (pin, lock): {wrong}; run make lock"
    assert len(have) > 100  # the whole environment, not only the top-level pins


def test_both_stacks_pin_the_same_openmmlab_packages():
    locked_stack, system = pins(REPO / "requirements.txt"), pins(REPO / "requirements-system.txt")
    for name in ("mmcv-lite", "mmengine", "mmdet", "grad-cam", "pycocotools"):
        assert locked_stack[name] == system[name], name
    assert "torch" not in system and "mmcv" not in system  # the interpreter's torch; nothing compiled


def test_the_compile_finds_the_venvs_ninja(monkeypatch, tmp_path):
    """torch looks for ninja on PATH; an unactivated venv's bin/ is not there, so compile_wheel adds it."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "ninja").write_text("#!/bin/sh\n")
    (fake_bin / "ninja").chmod(0o755)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(install_mmcv.sys, "executable", str(fake_bin / "python"))
    assert install_mmcv.ninja_available()
    monkeypatch.setattr(install_mmcv.sys, "executable", str(tmp_path / "python"))
    assert not install_mmcv.ninja_available()
