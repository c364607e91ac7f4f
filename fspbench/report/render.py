"""report.md and a self-contained report.html, both rendered from one list of blocks.

A block is a tuple: ("h", level, text), ("p", text), ("list", [items]), ("table", DataFrame) or
("figure", name, caption), where name is a file stem under figures/. Text may use **bold** and
`code`. Each page is a Jinja2 template (templates/report.md.j2, templates/report.html.j2); Markdown
tables are pandas' ``to_markdown`` (tabulate). Markdown refers to figures/NAME.png; HTML embeds each
PNG as base64, so the file opens anywhere with no external resource.
"""

from __future__ import annotations

import base64
import math
import re
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup, escape

Block = tuple[Any, ...]


def cell_text(v: Any) -> str:
    """One table cell as text: floats with 2 decimals, NaN/None as a dash."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.2f}"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v))
    return str(v)


def _inline(text: str) -> Markup:
    """**bold** and `code` as HTML, everything else escaped."""
    s = str(escape(text))
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    return Markup(re.sub(r"`(.+?)`", r"<code>\1</code>", s))


@cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("fspbench.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html.j2"], default=False),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters["inline"] = _inline
    return env


def _md_table(df: pd.DataFrame) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")

    cells = df.map(lambda v: esc(cell_text(v)))
    cells.columns = [esc(str(c)) for c in df.columns]
    return cells.to_markdown(index=False, tablefmt="pipe", disable_numparse=True)


def _fields(b: Block, figures_dir: Path | None) -> dict[str, Any]:
    """A block as the named fields the templates read; figures_dir set: the figure's PNG as base64."""
    kind = b[0]
    if kind == "h":
        return {"kind": kind, "level": b[1], "text": b[2]}
    if kind == "p":
        return {"kind": kind, "text": b[1]}
    if kind == "list":
        return {"kind": kind, "entries": b[1]}
    if kind == "table":
        df = b[1]
        if figures_dir is None:
            return {"kind": kind, "markdown": _md_table(df)}
        return {"kind": kind, "columns": [str(c) for c in df.columns], "rows": df.map(cell_text).values.tolist()}
    if kind == "figure":
        png = None if figures_dir is None else base64.b64encode((figures_dir / f"{b[1]}.png").read_bytes()).decode()
        return {"kind": kind, "name": b[1], "caption": b[2], "png": png}
    raise ValueError(f"unknown block kind {kind!r}")


def markdown(blocks: list[Block]) -> str:
    """The blocks as GitHub-flavoured Markdown."""
    return _env().get_template("report.md.j2").render(blocks=[_fields(b, None) for b in blocks])


def html_page(blocks: list[Block], title: str, figures_dir: Path) -> str:
    """The blocks as one self-contained HTML page: PNG figures inlined as base64 data URIs."""
    return _env().get_template("report.html.j2").render(title=title,
                                                        blocks=[_fields(b, figures_dir) for b in blocks])
