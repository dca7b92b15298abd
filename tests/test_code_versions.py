"""Code versions from the import graph: editing a module makes exactly its importers stale."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fdt.keys import PACKAGE_ROOT, direct_imports, imported_modules, stage_code_version
from tests.conftest import REPO

SCRIPTS = REPO / "workflow" / "scripts"


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """pkg: a -> b (absolute), b -> c (relative), c -> sub.d (inside a function); e alone."""
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import f\n",
        "pkg/b.py": "from . import c\nimport numpy\n\ndef f():\n    return c\n",
        "pkg/c.py": "def g():\n    from .sub.d import h\n    return h\n",
        "pkg/sub/__init__.py": "from .d import h\n",
        "pkg/sub/d.py": "def h():\n    return 1\n",
        "pkg/e.py": "import os\n",
        "stage_a.py": "from pkg.a import f\n",
        "stage_e.py": "import pkg.e\n",
        "stage_sub.py": "from pkg import sub\n",
    })
    return tmp_path


def test_direct_imports_resolve_absolute_relative_and_package_forms(package: Path) -> None:
    root = package / "pkg"
    assert direct_imports("from pkg.b import f", None, "pkg", root) == {"", "b"}
    assert direct_imports("from . import c", "b", "pkg", root) == {"", "c"}
    assert direct_imports("from .d import h", "sub", "pkg", root) == {"", "sub", "sub.d"}
    assert direct_imports("from pkg import sub, nothing", None, "pkg", root) == {"", "sub"}
    assert direct_imports("import numpy, pkg.e", None, "pkg", root) == {"", "e"}
    # Imports for type hints only run nothing: no dependency.
    hints = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import e\nelse:\n    import pkg.a\n"
    assert direct_imports(hints, None, "pkg", root) == {"", "a"}


def test_closure_follows_imports_at_any_depth(package: Path) -> None:
    root = package / "pkg"
    assert imported_modules([package / "stage_a.py"], "pkg", root) == ["", "a", "b", "c", "sub", "sub.d"]
    assert imported_modules([package / "stage_e.py"], "pkg", root) == ["", "e"]
    assert imported_modules([package / "stage_sub.py"], "pkg", root) == ["", "sub", "sub.d"]


@pytest.mark.parametrize("edited, stale", [("sub/d.py", {"a", "sub"}), ("e.py", {"e"}),
                                           ("c.py", {"a"}), ("__init__.py", {"a", "e", "sub"})])
def test_an_edit_makes_exactly_its_importers_stale(package: Path, edited: str, stale: set[str]) -> None:
    root = package / "pkg"
    stages = {s: package / f"stage_{s}.py" for s in ("a", "e", "sub")}
    before = {s: stage_code_version([p], "pkg", root) for s, p in stages.items()}
    with open(root / edited, "a") as f:
        f.write("\n# edited\n")
    after = {s: stage_code_version([p], "pkg", root) for s, p in stages.items()}
    assert {s for s in stages if after[s] != before[s]} == stale


def test_the_workflows_stages_see_their_indirect_imports() -> None:
    """What the hand-written lists missed: training reads the store through the training set,
    labelling reads the store and Atari's action sets."""
    train = imported_modules([SCRIPTS / "train_model.py"])
    assert {"models.trainer", "models.transformer", "dataset.training_set", "replay.store",
            "replay.dopamine", "tracking"} <= set(train)
    label = imported_modules([SCRIPTS / "label_states.py"])
    assert {"oracle.labels", "oracle.c51", "replay.store", "atari"} <= set(label)
    assert "torch" not in train and "mlflow" not in train  # only the package's own modules
    assert "replay.demo" not in imported_modules([SCRIPTS / "convert_replay.py"])


def test_editing_an_indirect_import_reruns_only_its_stages(tmp_path: Path) -> None:
    """On a copy of the real package: `replay.dopamine` is imported by the training stage only
    through the training set and the store; the report never imports it."""
    root = tmp_path / "fdt"
    shutil.copytree(PACKAGE_ROOT, root, ignore=shutil.ignore_patterns("__pycache__"))
    scripts = {s: SCRIPTS / f"{s}.py" for s in ("train_model", "report", "convert_replay")}
    assert "replay.dopamine" not in direct_imports((SCRIPTS / "train_model.py").read_text(), None, "fdt", root)
    before = {s: stage_code_version([p], "fdt", root) for s, p in scripts.items()}
    with open(root / "replay" / "dopamine.py", "a") as f:
        f.write("\n# edited\n")
    after = {s: stage_code_version([p], "fdt", root) for s, p in scripts.items()}
    assert {s for s in scripts if after[s] != before[s]} == {"train_model", "convert_replay"}
