"""The package's imports point down only: the subpackages are the layers, and no modules import each other in a circle.

The layering, written down once (lowest first). A module may import modules of its own folder and of
lower layers, never of a folder beside it in its layer or above it; that includes imports inside
functions. Among the modules of one folder, imports may not run in a circle.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "balloondet"
LAYERS = [
    {"__init__"},  # the package's face: its version
    {"core"},  # errors, defaults, files and images, the console
    {"engine", "data"},  # mmengine/mmdet/torch and the Detector; the dataset: beside each other, neither uses the other
    {"detect"},  # train, test, predict and the figures of their results
    # feature maps, CAM, cam-eval (on a Detector; matched against ground truth like the test figures); beside it,
    # deployment: the exported model, its runtimes and their benchmark (on a Detector and the test's scoring)
    {"explain", "deploy"},
    {"jobs"},  # the README figures and the notebooks: several steps each
    {"cli"},
    {"__main__"},
]
LAYER_OF = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def modules() -> dict[str, Path]:
    """``"engine.config" -> path`` for every module of the package (``"core"`` for ``core/__init__.py``)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def package_imports(source: str, module: str = "", known: set[str] | frozenset[str] = frozenset()) -> set[str]:
    """The ``balloondet`` modules that ``source`` (the module ``module``) imports, anywhere in the file.

    ``from balloondet.core import files`` is ``core.files`` when that is a module (``known``), else ``core``.
    """
    package = module.split(".")[:-1] if module else []
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1] + ([node.module] if node.module else [])
                target = ".".join(base)
            elif node.module == "balloondet" or (node.module or "").startswith("balloondet."):
                target = node.module.partition(".")[2]
            else:
                continue  # a third-party or stdlib import
            for alias in node.names:
                child = f"{target}.{alias.name}" if target else alias.name
                found.add(child if child in known or not target else target)
        elif isinstance(node, ast.Import):
            found.update(a.name.partition(".")[2] for a in node.names if a.name.startswith("balloondet."))
    return found - {""}


def folder(module: str) -> str:
    """The layer name of a module: its top folder (``engine.config`` -> ``engine``), or itself at the top."""
    return module.split(".")[0]


def violations(imports: dict[str, set[str]]) -> list[str]:
    """``importer -> imported`` pairs that point sideways or upward, or name an unplaced folder."""
    bad = []
    for module, targets in sorted(imports.items()):
        if folder(module) not in LAYER_OF:
            bad.append(f"{module}: {folder(module)} is not placed in LAYERS (tests/test_structure.py)")
            continue
        for target in sorted(targets):
            if folder(target) not in LAYER_OF:
                bad.append(f"{module} -> {target}: {folder(target)} is not placed in LAYERS")
            elif folder(target) == folder(module):
                continue  # within a folder: see circles()
            elif LAYER_OF[folder(target)] >= LAYER_OF[folder(module)]:
                how = "sideways" if LAYER_OF[folder(target)] == LAYER_OF[folder(module)] else "upward"
                bad.append(f"{module} -> {target} ({how})")
    return bad


def circles(imports: dict[str, set[str]]) -> list[list[str]]:
    """Every loop of imports among the modules (each found once, from its smallest member)."""
    loops = []

    def walk(path: list[str]) -> None:
        for target in sorted(imports.get(path[-1], ())):
            if target == path[0]:
                loops.append(path)
            elif target not in path and target > path[0]:
                walk([*path, target])

    for start in sorted(imports):
        walk([start])
    return loops


@pytest.fixture(scope="module")
def imports() -> dict[str, set[str]]:
    known = set(modules())
    return {name: package_imports(path.read_text(), name if path.stem != "__init__" else f"{name}.__init__", known)
            for name, path in modules().items()}


def test_every_layer_is_a_folder_of_the_package():
    found = {folder(m) for m in modules()}
    assert found == set(LAYER_OF), found ^ set(LAYER_OF)
    for layer in LAYER_OF:
        assert (PACKAGE / layer / "__init__.py").is_file() or (PACKAGE / f"{layer}.py").is_file(), layer


def test_imports_point_down_only(imports):
    assert violations(imports) == []


def test_no_modules_import_each_other_in_a_circle(imports):
    assert circles(imports) == []


def test_each_subpackage_lists_its_modules():
    """The ``__init__`` of each layer folder is its table of contents: every module is named there."""
    for layer in LAYER_OF:
        init = PACKAGE / layer / "__init__.py"
        if not init.is_file():
            continue
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        stems = [p.stem for p in sorted(init.parent.glob("*.py")) if p.stem != "__init__"]
        missing = [stem for stem in stems if f"``{stem}``" not in doc]
        assert missing == [], f"{layer}/__init__.py does not name {missing}"


@pytest.mark.parametrize("imports, expected", [
    ({"explain.cam": {"jobs.readme_figures"}}, "explain.cam -> jobs.readme_figures (upward)"),
    ({"engine.detector": {"detect.train"}}, "engine.detector -> detect.train (upward)"),
    ({"data.prepare": {"engine.config"}}, "data.prepare -> engine.config (sideways)"),
    ({"newlayer.x": set()}, "newlayer.x: newlayer is not placed"),
    ({"core.files": {"newlayer"}}, "core.files -> newlayer: newlayer is not placed"),
])
def test_the_check_catches_bad_imports(imports, expected):
    assert any(v.startswith(expected) for v in violations(imports))


def test_imports_within_a_folder_are_allowed_but_not_in_a_circle():
    assert violations({"explain.cam_eval": {"explain.cam"}}) == []
    assert circles({"explain.cam": {"explain.maps"}, "explain.maps": {"explain.plots"},
                    "explain.plots": {"explain.cam"}, "core.files": set()}) == [
        ["explain.cam", "explain.maps", "explain.plots"]]


def test_import_parsing_sees_every_form():
    source = """
from . import defaults, files
from .errors import DataError
from .. import engine
from ..engine.config import build_config
import balloondet.engine.detector
from balloondet.explain.cam import cam
from balloondet.core import errors
from balloondet import jobs
import numpy
from mmdet.apis import init_detector

def later():
    from balloondet.detect.predict import predict
"""
    known = {"core.defaults", "core.files", "core.errors", "engine", "engine.config", "engine.detector", "explain.cam",
             "detect.predict", "jobs"}
    assert package_imports(source, "core.images", known) == {
        "core.defaults", "core.files", "core.errors", "engine", "engine.config", "engine.detector", "explain.cam",
        "jobs", "detect.predict"}
