"""Install mmcv with its compiled ops into the running interpreter (step 2 of setup_env.sh).

    python scripts/install_mmcv.py --version 2.1.0 --cache DIR [--wheelhouse DIR] [--dry-run]

mmcv must match the installed torch (its C++/CUDA extension links against it), so pip cannot
pick it from a requirements file. Sources are tried in this order, and the script says which
one was used and why the earlier ones were not:

1. a wheel in ``$WHEELHOUSE`` (offline set-up, e.g. the GPU check: a CUDA build made elsewhere);
2. ``$MMCV_FIND_LINKS``, a pip --find-links page the user named;
3. OpenMMLab's prebuilt wheels, when torch is a CUDA build of a version they publish wheels for
   (torch 2.1: ``download.openmmlab.com/mmcv/dist/cu121/torch2.1/index.html``);
   ``MMCV_PREBUILT=0`` skips it, ``MMCV_INDEX_BASE`` points it elsewhere (tests);
4. a wheel this script compiled earlier, kept in ``--cache``;
5. compiling the sdist (from the wheelhouse or PyPI) with ``MMCV_WITH_OPS=1`` and no debug info;
   with CUDA ops when torch is a CUDA build and ``nvcc`` is found (``FORCE_CUDA=1``,
   ``TORCH_CUDA_ARCH_LIST`` from the visible GPU unless set), CPU ops otherwise.

The C++ standard follows torch: c++17 below 2.10, c++20 from 2.10 (its headers need it);
``MMCV_CXX_STD`` overrides. mmcv is installed with ``--no-deps``: its Python dependencies come
pinned from the stack's requirements in the next step, so nothing is installed twice.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

OPENMMLAB_INDEX = "https://download.openmmlab.com/mmcv/dist"
# torch minor versions OpenMMLab published mmcv 2.1.0 CUDA wheels for (and their CUDA tags)
PREBUILT = {"2.1.0": {(2, 1): ("cu118", "cu121"), (2, 0): ("cu117", "cu118")}}


def say(msg: str) -> None:
    print(f"[setup]           {msg}", flush=True)


def version_tuple(version: str) -> tuple[int, ...]:
    """'2.11.0+cu130' -> (2, 11, 0)."""
    return tuple(int(p) for p in re.findall(r"\d+", version.split("+")[0])[:3])


def cxx_std_for(torch_version: str) -> str:
    """The C++ standard mmcv must be compiled with for this torch (its headers need C++20 from 2.10)."""
    return "c++20" if version_tuple(torch_version)[:2] >= (2, 10) else "c++17"


def cuda_tag(cuda_version: str | None) -> str | None:
    """'12.1' -> 'cu121'; None (a CPU build of torch) -> None."""
    return "cu" + cuda_version.replace(".", "") if cuda_version else None


def openmmlab_index(mmcv_version: str, torch_version: str, cuda_version: str | None,
                    base: str = OPENMMLAB_INDEX) -> str | None:
    """OpenMMLab's find-links page for this torch and CUDA, or None when they publish no wheel for it."""
    tag = cuda_tag(cuda_version)
    major_minor = version_tuple(torch_version)[:2]
    if tag is None or tag not in PREBUILT.get(mmcv_version, {}).get(major_minor, ()):
        return None
    return f"{base.rstrip('/')}/{tag}/torch{major_minor[0]}.{major_minor[1]}/index.html"


@dataclass
class Facts:
    """What decides how mmcv is installed; gathered from the interpreter, or given in tests."""

    torch_version: str
    cuda_version: str | None  # torch.version.cuda: None for a CPU build
    python_tag: str  # cp311
    nvcc: str | None = None  # path of nvcc, when there is one
    gpu_arch: str | None = None  # "9.0" for the first visible GPU, when there is one
    cores: int = 1

    @classmethod
    def gather(cls) -> "Facts":
        import torch

        cuda = torch.version.cuda
        arch = None
        if cuda and torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            arch = f"{major}.{minor}"
        return cls(torch.__version__, cuda, f"cp{sys.version_info[0]}{sys.version_info[1]}", find_nvcc(), arch,
                   len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def find_nvcc() -> str | None:
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home and Path(home, "bin", "nvcc").is_file():
        return str(Path(home, "bin", "nvcc"))
    return shutil.which("nvcc")


@dataclass
class SourceBuild:
    """How to compile the sdist: the C++ standard and the environment for mmcv's setup.py."""

    cxx_std: str
    env: dict = field(default_factory=dict)
    kind: str = "cpu"  # "cpu" or "cuda-ARCHS"
    why: str = ""


def source_build(facts: Facts, env: dict) -> SourceBuild:
    """Settings for compiling mmcv against this torch."""
    std = env.get("MMCV_CXX_STD") or cxx_std_for(facts.torch_version)
    build_env = {"MMCV_WITH_OPS": "1", "MAX_JOBS": env.get("MAX_JOBS") or str(facts.cores),
                 "CFLAGS": (env.get("CFLAGS", "") + " -g0").strip()}  # no debug info: faster, 4x smaller
    if facts.cuda_version and facts.nvcc:
        arch = env.get("TORCH_CUDA_ARCH_LIST") or facts.gpu_arch
        if arch:
            build_env.update(FORCE_CUDA="1", TORCH_CUDA_ARCH_LIST=arch)
            if facts.nvcc and not env.get("CUDA_HOME"):
                build_env["CUDA_HOME"] = str(Path(facts.nvcc).resolve().parents[1])
            return SourceBuild(std, build_env, "cuda-" + arch.replace(" ", "_").replace(";", "_"),
                               f"CUDA ops for sm {arch} with {facts.nvcc}")
        why = "CPU ops only: nvcc is there but no GPU is visible and TORCH_CUDA_ARCH_LIST is not set"
    elif facts.cuda_version:
        why = "CPU ops only: torch is a CUDA build but there is no nvcc (set CUDA_HOME for CUDA ops)"
    else:
        why = "CPU ops (torch is a CPU build)"
    build_env["CUDA_VISIBLE_DEVICES"] = ""  # mmcv's setup.py builds CUDA ops whenever it sees a GPU
    build_env["FORCE_CUDA"] = "0"
    return SourceBuild(std, build_env, "cpu", why)


def cache_dir(root: Path, mmcv_version: str, facts: Facts, build: SourceBuild) -> Path:
    name = f"mmcv-{mmcv_version}-torch{facts.torch_version.split('+')[0]}-{facts.python_tag}-{build.cxx_std}"
    if build.kind != "cpu":
        name += f"-{cuda_tag(facts.cuda_version)}-{build.kind}"
    return Path(root) / f"{name}-{platform.machine()}"


def plan(mmcv_version: str, facts: Facts, env: dict, cache: Path) -> list[tuple[str, str]]:
    """The sources to try, in order: (kind, location)."""
    steps = []
    if env.get("WHEELHOUSE"):
        steps.append(("wheelhouse", env["WHEELHOUSE"]))
    if env.get("MMCV_FIND_LINKS"):
        steps.append(("find-links", env["MMCV_FIND_LINKS"]))
    index = openmmlab_index(mmcv_version, facts.torch_version, facts.cuda_version,
                            env.get("MMCV_INDEX_BASE") or OPENMMLAB_INDEX)
    if index and env.get("MMCV_PREBUILT", "1") != "0":
        steps.append(("openmmlab", index))
    build = source_build(facts, env)
    steps.append(("cache", str(cache_dir(cache, mmcv_version, facts, build))))
    steps.append(("source", build.why))
    return steps


def pip(*args: str, env: dict | None = None, quiet: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *(["--quiet"] if quiet else []), *args]
    return subprocess.run(cmd, env={**os.environ, **(env or {})},
                          stdout=subprocess.PIPE if quiet else None, stderr=subprocess.STDOUT if quiet else None,
                          text=True)


def fetch_prebuilt(mmcv_version: str, find_links: str, dest: Path, offline: bool = False) -> tuple[Path | None, str]:
    """Download the mmcv==V wheel pip picks from a find-links page or folder: (wheel or None, pip's last line)."""
    args = ["download", "--no-deps", "--only-binary", "mmcv", "-f", find_links, f"mmcv=={mmcv_version}",
            "-d", str(dest)]
    if offline:
        args.insert(1, "--no-index")
    done = pip(*args, quiet=True)
    tail = (done.stdout or "").strip().splitlines()
    wheels = sorted(Path(dest).glob(f"mmcv-{mmcv_version}-*.whl"))
    return (wheels[-1] if done.returncode == 0 and wheels else None), (tail[-1] if tail else "")


def install_wheel(wheel: Path, mmcv_version: str) -> bool:
    """pip install the wheel without its dependencies; True when mmcv's compiled ops came with it."""
    done = pip("install", "--no-deps", "--force-reinstall", str(wheel), quiet=True)
    return done.returncode == 0 and installed_has_ops(mmcv_version)


def installed_has_ops(mmcv_version: str) -> bool:
    """mmcv==V is installed with its compiled extension (checked without importing mmcv)."""
    from importlib import metadata

    try:
        dist = metadata.distribution("mmcv")
    except metadata.PackageNotFoundError:
        return False
    return dist.version == mmcv_version and any(re.match(r"mmcv/_ext\..*(so|pyd)$", str(f)) for f in dist.files or ())


def ninja_available() -> bool:
    """Whether torch's BuildExtension will find ninja (``compile_wheel`` puts this Python's bin/ on PATH)."""
    return bool(shutil.which("ninja") or shutil.which("ninja", path=str(Path(sys.executable).parent)))


def compile_wheel(mmcv_version: str, build: SourceBuild, dest: Path, wheelhouse: str | None) -> Path:
    """Download the sdist, set the C++ standard, build a wheel into ``dest``."""
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        # no build isolation: pip would prepare the metadata with the newest setuptools, which lacks pkg_resources
        get = ["download", "--no-deps", "--no-build-isolation", "--no-binary", "mmcv", f"mmcv=={mmcv_version}",
               "-d", str(work)]
        if wheelhouse:
            get += ["--no-index", "-f", wheelhouse]
        if pip(*get, quiet=True).returncode != 0:
            where = f" from {wheelhouse}" if wheelhouse else ""
            raise SystemExit(f"cannot get the mmcv {mmcv_version} sdist{where}")
        with tarfile.open(next(work.glob("mmcv-*.tar.gz"))) as tar:
            tar.extractall(work, **({"filter": "data"} if sys.version_info >= (3, 12) else {}))
        src = work / f"mmcv-{mmcv_version}"
        setup_py = src / "setup.py"
        text = setup_py.read_text()
        if "-std=c++17" not in text:
            raise SystemExit("mmcv's setup.py no longer mentions -std=c++17: update scripts/install_mmcv.py")
        setup_py.write_text(text.replace("-std=c++17", f"-std={build.cxx_std}"))
        jobs = f"{build.env['MAX_JOBS']} jobs" if ninja_available() else \
            "one file at a time (no ninja: torch's extension builder then falls back to setuptools)"
        say(f"compiling mmcv {mmcv_version} with {build.cxx_std}, {jobs}: {build.why}")
        say("this takes about 4 minutes on 2 cores for CPU ops (twice that without ninja), far longer with CUDA ops")
        # torch looks for ninja on PATH, where an unactivated venv's bin/ is not
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        done = pip("wheel", "--no-build-isolation", "--no-deps", str(src), "-w", str(work / "wheel"),
                   env={**build.env, "PATH": path})
        if done.returncode != 0:
            raise SystemExit(f"compiling mmcv {mmcv_version} failed (see the compiler output above)")
        dest.mkdir(parents=True, exist_ok=True)
        wheel = next((work / "wheel").glob("mmcv-*.whl"))
        shutil.move(str(wheel), dest / wheel.name)
        return dest / wheel.name


def install(mmcv_version: str, cache: Path, env: dict, facts: Facts | None = None,
            fetch=fetch_prebuilt, install_wheel=install_wheel, build=compile_wheel) -> str:
    """Try the plan in order; returns the kind of source that was used ("wheelhouse", ..., "source")."""
    facts = facts or Facts.gather()
    cuda = f"CUDA {facts.cuda_version}" if facts.cuda_version else "CPU build"
    gpu = f"sm {facts.gpu_arch}" if facts.gpu_arch else "none"
    say(f"torch {facts.torch_version} ({cuda}), {facts.python_tag}, nvcc: {facts.nvcc or 'none'}, GPU: {gpu}")
    with tempfile.TemporaryDirectory() as downloads:
        for kind, where in plan(mmcv_version, facts, env, cache):
            if kind in ("wheelhouse", "find-links", "openmmlab"):
                wheel, last = fetch(mmcv_version, where, Path(downloads), offline=kind == "wheelhouse")
                if wheel is not None and install_wheel(wheel, mmcv_version):
                    say(f"mmcv {mmcv_version}: prebuilt wheel {wheel.name} from {kind} {where}")
                    return kind
                why = "its wheel has no compiled ops" if wheel is not None else (last or "no matching wheel")
                say(f"no usable mmcv {mmcv_version} wheel from {kind} {where} ({why}); trying the next source")
            elif kind == "cache":
                wheels = sorted(Path(where).glob("mmcv-*.whl"))
                if wheels and install_wheel(wheels[-1], mmcv_version):
                    say(f"mmcv {mmcv_version}: the wheel compiled earlier, {wheels[-1]}")
                    return kind
            else:
                settings = source_build(facts, env)
                wheel = build(mmcv_version, settings, cache_dir(cache, mmcv_version, facts, settings),
                              env.get("WHEELHOUSE"))
                if not install_wheel(wheel, mmcv_version):
                    raise SystemExit(f"the compiled {wheel} did not install with its ops")
                say(f"mmcv {mmcv_version}: compiled from source ({settings.why}); wheel kept in {wheel.parent}")
                return kind
    raise SystemExit("no way to install mmcv worked")  # unreachable: the source build ends the plan


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--version", required=True, help="mmcv version, e.g. 2.1.0")
    p.add_argument("--cache", required=True, help="folder for compiled wheels")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the source build settings, do nothing")
    a = p.parse_args(argv)
    env = dict(os.environ)
    if installed_has_ops(a.version) and not a.dry_run:
        say(f"mmcv {a.version} with compiled ops is already installed")
        return 0
    if a.dry_run:
        facts = Facts.gather()
        for kind, where in plan(a.version, facts, env, Path(a.cache)):
            print(f"{kind}\t{where}")
        print(f"cxx_std\t{source_build(facts, env).cxx_std}")
        return 0
    install(a.version, Path(a.cache), env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
