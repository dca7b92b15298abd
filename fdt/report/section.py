"""A report section: what one system's report folder says about itself, for the HTML report.

Each system's report stage writes `section.json` beside its tables and figures:

    {"title": str, "summary": str,
     "tables": [{"title": str, "csv": "file.csv"}],
     "figures": [{"title": str, "png": "file.png", "caption": str}]}

with paths relative to the folder. fdt.report.html lays the sections out in one page.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fdt.io import write_json

SECTION = "section.json"


class SectionError(ValueError):
    pass


@dataclass(frozen=True)
class Table:
    title: str
    csv: str


@dataclass(frozen=True)
class Figure:
    title: str
    png: str
    caption: str = ""


@dataclass(frozen=True)
class Section:
    title: str
    summary: str
    tables: tuple[Table, ...] = ()
    figures: tuple[Figure, ...] = ()
    folder: Path = field(default=Path("."), compare=False)


def write_section(folder: str | Path, title: str, summary: str, tables: Sequence[Table] = (),
                  figures: Sequence[Figure] = ()) -> Path:
    """Write `section.json`; every table and figure named must already be in the folder."""
    folder = Path(folder)
    for name in [t.csv for t in tables] + [f.png for f in figures]:
        if not (folder / name).is_file():
            raise SectionError(f"{folder / SECTION}: names {name}, which is not in the folder")
    write_json(folder / SECTION, {"title": title, "summary": summary,
                                  "tables": [asdict(t) for t in tables],
                                  "figures": [asdict(f) for f in figures]})
    return folder / SECTION


def read_section(path: str | Path) -> Section:
    """A section from its `section.json`, checked: the fields it must have, its files present."""
    path = Path(path)
    try:
        raw: dict[str, Any] = json.loads(path.read_text())
        section = Section(title=str(raw["title"]), summary=str(raw["summary"]),
                          tables=tuple(Table(t["title"], t["csv"]) for t in raw.get("tables", [])),
                          figures=tuple(Figure(f["title"], f["png"], f.get("caption", ""))
                                        for f in raw.get("figures", [])),
                          folder=path.parent)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SectionError(f"{path}: not a report section ({error!r}); expected title, summary, "
                           "tables [{title, csv}] and figures [{title, png, caption}]") from error
    for name in [t.csv for t in section.tables] + [f.png for f in section.figures]:
        if not (path.parent / name).is_file():
            raise SectionError(f"{path}: names {name}, which is not in {path.parent}")
    return section
