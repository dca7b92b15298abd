"""A non-editable install works: the wheel holds every module and the config schema."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO

SCHEMA = "workflow/schemas/config.schema.yaml"


def test_wheel_carries_the_package_and_its_config_schema(tmp_path: Path) -> None:
    # Build from a copy, so the build's own folders never land in the shared checkout.
    source = tmp_path / "source"
    shutil.copytree(REPO / "fdt", source / "fdt", ignore=shutil.ignore_patterns("__pycache__"))
    (source / "workflow" / "schemas").mkdir(parents=True)
    shutil.copy(REPO / SCHEMA, source / SCHEMA)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(tmp_path / "wheels"), str(source)],
                   check=True, capture_output=True, text=True)
    (wheel,) = (tmp_path / "wheels").glob("fdt-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert archive.read("fdt/schemas/config.schema.yaml") == (REPO / SCHEMA).read_bytes()
        archive.extractall(tmp_path / "site")
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "fdt").rglob("*.py")
               if "__pycache__" not in p.parts}
    missing = sorted(modules - names)
    assert not missing, f"not in the wheel: {missing}; list their packages in pyproject.toml"

    # Installed (unpacked) elsewhere, fdt reads the schema it carries.
    check = ("import fdt.settings as s; from fdt.settings import defaults; "
             "print(s.__file__); print(s.SCHEMA_PATH); print(sorted(defaults('train').items()))")
    out = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, check=True,
                         capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp_path / "site"), "PATH": ""}).stdout.splitlines()
    site = (tmp_path / "site").resolve()
    assert Path(out[0]).is_relative_to(site) and Path(out[1]) == site / "fdt/schemas/config.schema.yaml"
    from fdt.settings import defaults

    assert out[2] == str(sorted(defaults("train").items()))
