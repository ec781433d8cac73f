"""The package's imports point down only: steps use the shared modules, never each other.

The layering, written down once (lowest first). A module may import modules of lower layers
only, never one of its own layer or above; that includes imports inside functions.

- base: the error classes and the shared defaults;
- io: files, images and figures;
- libraries: checkpoint loading, the VIA->COCO converter (used by the data step and the
  `convert` verb), synthetic data, configs and devices, mmengine hooks, data transforms;
- model: load a detector, find its checkpoint and its layers;
- steps: one module per notebook cell / CLI verb; they never import each other;
- steps built on another step (cam_eval measures cam's maps);
- figures: an orchestrator that calls several steps;
- cli, then ``__main__``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "balloondet"
STEPS = {"data", "train", "evaluate", "predict", "featmap", "cam", "curves", "plot_dataset", "notebooks",
         "report"}
LAYERS = [
    {"__init__", "errors", "defaults"},
    {"io"},
    {"checkpoint", "convert", "synthetic", "hooks", "transforms", "precision", "cocostats", "tta"},
    {"config"},  # asks checkpoint whether the COCO checkpoint is cached
    {"model"},
    STEPS,
    {"cam_eval", "errors_analysis"},  # steps built on another: cam's maps measured, report's drawing reused
    {"figures"},
    {"cli"},
    {"__main__"},
]
LAYER_OF = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def package_imports(source: str) -> set[str]:
    """Names of the ``balloondet`` modules that ``source`` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and not (node.module or "").startswith("balloondet"):
                continue  # a third-party or stdlib import
            module = node.module or ""
            if node.level == 0:
                module = module.partition(".")[2]  # "balloondet.x" -> "x"
            if module:
                found.add(module.split(".")[0])
            else:  # from . import x, y
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("balloondet."))
    return found


def violations(imports: dict[str, set[str]]) -> list[str]:
    """``importer -> imported`` pairs that point sideways or upward, or name an unplaced module."""
    bad = []
    for module, targets in sorted(imports.items()):
        if module not in LAYER_OF:
            bad.append(f"{module}: not placed in LAYERS (tests/test_structure.py)")
            continue
        for target in sorted(targets):
            if target not in LAYER_OF:
                bad.append(f"{module} -> {target}: {target} is not placed in LAYERS")
            elif LAYER_OF[target] >= LAYER_OF[module]:
                how = "sideways" if LAYER_OF[target] == LAYER_OF[module] else "upward"
                bad.append(f"{module} -> {target} ({how})")
    return bad


def test_imports_point_down_only():
    imports = {path.stem: package_imports(path.read_text()) for path in PACKAGE.glob("*.py")}
    assert set(imports) >= STEPS  # the walk found the package
    assert violations(imports) == []


@pytest.mark.parametrize("imports, expected", [
    ({"cam": {"featmap"}}, "cam -> featmap (sideways)"),
    ({"model": {"train"}}, "model -> train (upward)"),
    ({"io": {"io"}}, "io -> io (sideways)"),
    ({"newstep": set()}, "newstep: not placed"),
])
def test_the_check_catches_bad_imports(imports, expected):
    assert any(v.startswith(expected) for v in violations(imports))


def test_import_parsing_sees_every_form():
    source = """
from . import defaults, io
from .model import load_model
import balloondet.config
from balloondet.cam import cam
from balloondet import errors
import numpy
from mmdet.apis import init_detector

def later():
    from .predict import predict
"""
    assert package_imports(source) == {"defaults", "io", "model", "config", "cam", "errors", "predict"}
