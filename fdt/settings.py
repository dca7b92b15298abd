"""Settings: the one place each setting's default lives, and parameter objects built from config.

Every setting is declared once, with its default, in the config schema
(`workflow/schemas/config.schema.yaml`, which an installed wheel carries as
`fdt/schemas/config.schema.yaml`: see pyproject.toml). The parameter dataclasses of the library
take their defaults from it (`defaults`), and the workflow's scripts build them from a config
section with `params_from`, never field by field: adding a setting touches the schema and one
dataclass.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

_PACKAGE = Path(__file__).resolve().parent
_INSTALLED_SCHEMA = _PACKAGE / "schemas" / "config.schema.yaml"
SCHEMA_PATH = (_INSTALLED_SCHEMA if _INSTALLED_SCHEMA.is_file()
               else _PACKAGE.parent / "workflow" / "schemas" / "config.schema.yaml")

T = TypeVar("T")


@functools.cache
def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def defaults(*section: str) -> dict[str, Any]:
    """The schema's default of every setting in a section, e.g. defaults("oracle", "offline");
    lists come back as tuples, as the frozen dataclasses hold them."""
    node = load_schema()
    for name in section:
        node = node["properties"][name]
    return {name: _frozen(spec["default"]) for name, spec in node.get("properties", {}).items()
            if "default" in spec}


def params_from(cls: type[T], *settings: Mapping[str, Any], **fixed: Any) -> T:
    """A parameter dataclass from config settings: the fields it has (other keys are ignored,
    later mappings win), lists as tuples, then `fixed` values (e.g. the seed)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for mapping in settings:
        values.update({k: _frozen(v) for k, v in mapping.items() if k in names})
    values.update(fixed)
    return cls(**values)


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
