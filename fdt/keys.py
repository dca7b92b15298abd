"""Artifact keys: a short digest of everything that decides an artifact.

A key covers the stage's own parameters, the keys of its inputs and a version of the library code
the stage runs. Changing any of them gives a new folder; changing it back finds the old one.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from fdt.credentials import refuse_credentials
from fdt.io import write_json

KEY_LENGTH = 10
PACKAGE_ROOT = Path(__file__).resolve().parent


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def module_file(name: str, root: Path = PACKAGE_ROOT) -> Path | None:
    """The source file of module `name` (relative to the package: "" is the package itself,
    "replay.store" a submodule), or None when there is no such module."""
    base = root.joinpath(*name.split(".")) if name else root
    for path in (base.with_suffix(".py") if name else None, base / "__init__.py"):
        if path is not None and path.is_file():
            return path
    return None


def _with_parents(name: str) -> set[str]:
    """Importing a.b.c runs the package's, a's and a.b's __init__ too."""
    parts = name.split(".") if name else []
    return {".".join(parts[:k]) for k in range(len(parts) + 1)}


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of a module except those under `if TYPE_CHECKING:` (imports for type hints
    only run no code, so they do not make a stage depend on a module)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            test = child.test if isinstance(child, ast.If) else None
            if test is not None and ast.unparse(test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def direct_imports(source: str, module: str | None, package: str = "fdt",
                   root: Path = PACKAGE_ROOT) -> set[str]:
    """Modules of `package` (names relative to it) that a source imports anywhere in its body,
    function-level imports included. `module` is the source's own name, for relative imports
    (None for a script outside the package)."""
    found: set[str] = set()

    def add(absolute: str) -> bool:
        if absolute != package and not absolute.startswith(package + "."):
            return False
        name = absolute[len(package) + 1:]
        if module_file(name, root) is None:
            return False
        found.update(_with_parents(name))
        return True

    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if module is None:
                    continue
                is_package = module_file(module, root) == root.joinpath(*module.split("."), "__init__.py")
                here = module.split(".") if module else []
                keep = len(here) - node.level + (1 if is_package else 0)
                base = ".".join([package, *here[:keep], *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                if not add(f"{base}.{alias.name}"):  # a name from the module, not a submodule
                    add(base)
    return found


def imported_modules(entries: Iterable[str | Path], package: str = "fdt",
                     root: Path = PACKAGE_ROOT) -> list[str]:
    """Every module of `package` that the entry files import, directly or not, sorted."""
    pending = set().union(*(direct_imports(Path(e).read_text(), None, package, root)
                            for e in entries))
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name, root)
        assert path is not None
        pending |= direct_imports(path.read_text(), name, package, root) - seen
    return sorted(seen)


def code_version(modules: Iterable[str], root: Path = PACKAGE_ROOT) -> str:
    """Digest of the source of the named `fdt` modules (e.g. "dopamine", "store").

    Only the modules a stage runs enter its key, so editing one module makes exactly the
    stages that use it stale.
    """
    digest = hashlib.sha256()
    for name in sorted(set(modules)):
        path = module_file(name, root)
        if path is None:
            raise ValueError(f"code_version: no module fdt.{name} under {root}")
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:KEY_LENGTH]


def stage_code_version(entries: Iterable[str | Path], package: str = "fdt",
                       root: Path = PACKAGE_ROOT) -> str:
    """Code version of a stage: the source of every module its entry files (the stage's
    script) import, directly or not. Computed, so it cannot drift from the code."""
    return code_version(imported_modules(entries, package, root), root)


def artifact_key(params: Mapping[str, Any], input_keys: Iterable[str] = (), code: str = "") -> str:
    """Short digest of a stage's parameters, its inputs' keys and its code version. Parameters
    holding a credential are refused (CredentialError): they would be written in params.json."""
    refuse_credentials(params, "params", "params.json and the artifact keys")
    payload = {"params": dict(params), "inputs": sorted(input_keys), "code": code}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:KEY_LENGTH]


def write_params(folder: str | Path, stage: str, params: Mapping[str, Any],
                 input_keys: Iterable[str] = (), code: str = "",
                 details: Mapping[str, Any] | None = None) -> str:
    """Write `params.json` saying what an artifact folder is; return its key.

    `details` (e.g. the seed of a folder below the key) are recorded but not part of the key.
    """
    key = artifact_key(params, input_keys, code)
    refuse_credentials(details or {}, "details", "params.json")
    write_json(Path(folder) / "params.json", {
        "stage": stage,
        "key": key,
        "params": dict(params),
        "inputs": sorted(input_keys),
        "code": code,
        **({"details": dict(details)} if details else {}),
    })
    return key


class KeyMismatchError(RuntimeError):
    """A stage wrote a params.json whose key is not its folder's."""


def record_stage(folder: str | Path, stage: str, params: Mapping[str, Any],
                 input_keys: Iterable[str], code: str, key: str,
                 details: Mapping[str, Any] | None = None) -> None:
    """Write a stage's `params.json` and check it describes the folder the workflow planned
    (`key`, from the folder's path): a mismatch means the plan and the stage disagree on what
    decides the artifact."""
    written = write_params(folder, stage, params, input_keys, code, details)
    if written != key:
        raise KeyMismatchError(f"{folder}: params.json gives key {written}, but the folder is "
                               f"keyed {key}; the stage's params or inputs differ from the plan's")
