"""Artifact keys: a short digest of everything that decides an artifact.

A key covers the stage's own parameters, the keys of its inputs and a version of the library code
the stage runs. Changing any of them gives a new folder; changing it back finds the old one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fdt.io import write_json

KEY_LENGTH = 10
PACKAGE_ROOT = Path(__file__).resolve().parent


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def code_version(modules: Iterable[str]) -> str:
    """Digest of the source of the named `fdt` modules (e.g. "dopamine", "store").

    Only the modules a stage runs enter its key, so editing one module makes exactly the
    stages that use it stale.
    """
    digest = hashlib.sha256()
    for name in sorted(set(modules)):
        path = PACKAGE_ROOT / f"{name.replace('.', '/')}.py"
        if not path.is_file():
            raise ValueError(f"code_version: no module fdt.{name} (expected {path})")
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:KEY_LENGTH]


def artifact_key(params: Mapping[str, Any], input_keys: Iterable[str] = (), code: str = "") -> str:
    """Short digest of a stage's parameters, its inputs' keys and its code version."""
    payload = {"params": dict(params), "inputs": sorted(input_keys), "code": code}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:KEY_LENGTH]


def write_params(folder: str | Path, stage: str, params: Mapping[str, Any],
                 input_keys: Iterable[str] = (), code: str = "",
                 details: Mapping[str, Any] | None = None) -> str:
    """Write `params.json` saying what an artifact folder is; return its key.

    `details` (e.g. the seed of a folder below the key) are recorded but not part of the key.
    """
    key = artifact_key(params, input_keys, code)
    write_json(Path(folder) / "params.json", {
        "stage": stage,
        "key": key,
        "params": dict(params),
        "inputs": sorted(input_keys),
        "code": code,
        **({"details": dict(details)} if details else {}),
    })
    return key
