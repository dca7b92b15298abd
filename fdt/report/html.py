"""The HTML report: one page that says what was run, on what data, with which settings, then
every system's section (fdt.report.section) with its tables and figures.

The page is read before it is searched: each section opens with its headline figure (the
section's first) and its short text; its other figures and every table follow folded
(`<details>`), each table with its CSV. The page and its images form one folder (figures are
copied in beside `index.html`), so it can be opened from disk, copied elsewhere or served as it is.
"""

from __future__ import annotations

import html
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fdt.io import atomic_path
from fdt.report.section import Figure, Section, read_section

MAX_TABLE_ROWS = 200  # a longer table is cut, with a link to its CSV

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-top: 1em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.5em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { margin: 0.5em 0; }
figure img { max-width: 100%; max-height: 24em; border: 1px solid #eee; }
details { margin: 0.3em 0; } summary { cursor: pointer; } details table { margin-top: 0.3em; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(30em, 1fr));
           gap: 1em; }
figcaption { font-size: 0.9em; color: #555; } dl { display: grid; grid-template-columns: max-content auto; }
dt { font-weight: 600; padding-right: 1em; } dd { margin: 0; } .note { color: #666; }
"""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_value(v) for v in value)
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_value(v)}" for k, v in value.items())
    return str(value)


def description_html(description: Mapping[str, Any]) -> str:
    """What was run: each entry as a term and its value."""
    rows = "".join(f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(_value(v))}</dd>"
                   for k, v in description.items())
    return f"<dl>{rows}</dl>"


def _table_html(title: str, csv: Path, link: str) -> str:
    """The table folded under its title, with its row count and CSV link in view."""
    frame = pd.read_csv(csv)
    anchor = f'<a href="{html.escape(link)}" download>CSV</a>'
    head = (f"<summary><b>{html.escape(title)}</b> "
            f'<span class="note">({len(frame)} rows, {anchor})</span></summary>')
    if frame.empty:
        return f"<details>{head}<p class=\"note\">(no rows)</p></details>"
    shown = frame.head(MAX_TABLE_ROWS)
    body = shown.to_html(index=False, na_rep="", float_format=lambda x: f"{x:.4g}",
                         border=0, escape=True)
    more = (f'<p class="note">(first {MAX_TABLE_ROWS} of {len(frame)} rows; the CSV has all)</p>'
            if len(frame) > MAX_TABLE_ROWS else "")
    return f"<details>{head}{body}{more}</details>"


def _figure_html(figure: Figure, slug: str) -> str:
    name = Path(figure.png).name
    return (f'<figure><img src="{html.escape(slug)}/{html.escape(name)}" '
            f'alt="{html.escape(figure.title)}"><figcaption><b>'
            f"{html.escape(figure.title)}.</b> {html.escape(figure.caption)}"
            "</figcaption></figure>")


def _section_html(section: Section, slug: str, out_dir: Path) -> str:
    """The section's HTML: headline figure, text, then its other figures and its tables folded;
    its files are copied to `out_dir/slug/`."""
    files = out_dir / slug
    files.mkdir(parents=True, exist_ok=True)
    for name in [t.csv for t in section.tables] + [f.png for f in section.figures]:
        shutil.copyfile(section.folder / name, files / Path(name).name)
    parts = [f'<h2 id="{slug}">{html.escape(section.title)}</h2>']
    headline, *others = section.figures or [None]
    if headline is not None:
        parts.append(_figure_html(headline, slug))
    parts.append(f"<p>{html.escape(section.summary)}</p>")
    if others:
        titles = "; ".join(html.escape(f.title) for f in others)
        parts.append(f"<details><summary><b>{len(others)} more figure(s)</b> "
                     f'<span class="note">({titles})</span></summary><div class="figures">'
                     + "".join(_figure_html(f, slug) for f in others) + "</div></details>")
    for table in section.tables:
        parts.append(_table_html(table.title, section.folder / table.csv,
                                 f"{slug}/{Path(table.csv).name}"))
    return "\n".join(parts)


def build_html(section_files: Sequence[str | Path], description: Mapping[str, Any],
               out_dir: str | Path, title: str = "FDT workflow report") -> Path:
    """Write `index.html` and the sections' files into `out_dir`; returns the page's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = [read_section(path) for path in section_files]
    slugs: list[str] = []
    for section in sections:  # unique anchors and folders, in order
        slug, n = _slug(section.title), 2
        while slug in slugs:
            slug, n = f"{_slug(section.title)}-{n}", n + 1
        slugs.append(slug)
    contents = "".join(f'<li><a href="#{s}">{html.escape(sec.title)}</a></li>'
                       for s, sec in zip(slugs, sections))
    body = "\n".join(_section_html(sec, s, out_dir) for s, sec in zip(slugs, sections))
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><h2 id='what-was-run'>What was run</h2>"
            f"{description_html(description)}<h2>Contents</h2><ul>{contents}</ul>\n{body}"
            "</body></html>\n")
    with atomic_path(out_dir / "index.html") as tmp:
        tmp.write_text(page)
    return out_dir / "index.html"
