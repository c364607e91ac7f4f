"""report.md and a self-contained report.html, both rendered from one list of blocks.

A block is a tuple: ("h", level, text), ("p", text), ("list", [items]), ("table", DataFrame) or
("figure", name, caption), where name is a file stem under figures/. Text may use **bold** and
`code`. Markdown refers to figures/NAME.png; HTML embeds each PNG as base64, so the file opens
anywhere with no external resource.
"""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

Block = tuple[Any, ...]

# Counts the images and those that decoded (naturalWidth > 0) into a hidden <pre>, so a headless
# browser's DOM dump can check the report; it changes nothing a reader sees.
IMG_CHECK = """<pre id="img-check" hidden></pre>
<script>
window.addEventListener("load", function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; } }
  document.getElementById("img-check").textContent = "images=" + imgs.length + " loaded=" + ok;
});
</script>"""

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
line-height:1.45;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.85em}th,td{border:1px solid #ccc;padding:3px 7px;
text-align:left;vertical-align:top}th{background:#f3f3f3}img{max-width:100%}code{background:#f3f3f3;padding:0 3px}
figure{margin:1em 0}figcaption{font-size:0.9em;color:#555}"""


def cell_text(v: Any) -> str:
    """One table cell as text: floats with 2 decimals, NaN/None as a dash."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.2f}"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v))
    return str(v)


def markdown(blocks: list[Block]) -> str:
    """The blocks as GitHub-flavoured Markdown."""
    out: list[str] = []
    for b in blocks:
        kind = b[0]
        if kind == "h":
            out.append("#" * b[1] + " " + b[2])
        elif kind == "p":
            out.append(b[1])
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in b[1]) if b[1] else "- none")
        elif kind == "table":
            out.append(_md_table(b[1]))
        elif kind == "figure":
            out.append(f"![{b[2]}](figures/{b[1]}.png)\n\n*{b[2]}* ([SVG](figures/{b[1]}.svg))")
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    return "\n\n".join(out) + "\n"


def _md_table(df: pd.DataFrame) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(esc(str(c)) for c in df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(esc(cell_text(v)) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *rows])


def _inline(text: str) -> str:
    s = html.escape(text)
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", s)


def html_page(blocks: list[Block], title: str, figures_dir: Path) -> str:
    """The blocks as one self-contained HTML page: PNG figures inlined as base64 data URIs."""
    body: list[str] = []
    for b in blocks:
        kind = b[0]
        if kind == "h":
            body.append(f"<h{b[1]}>{_inline(b[2])}</h{b[1]}>")
        elif kind == "p":
            body.append(f"<p>{_inline(b[1])}</p>")
        elif kind == "list":
            items = "".join(f"<li>{_inline(i)}</li>" for i in b[1]) or "<li>none</li>"
            body.append(f"<ul>{items}</ul>")
        elif kind == "table":
            df = b[1]
            head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(cell_text(v))}</td>" for v in row) + "</tr>"
                           for row in df.itertuples(index=False))
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "figure":
            data = base64.b64encode((figures_dir / f"{b[1]}.png").read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(b[2])}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{_inline(b[2])}</figcaption></figure>")
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + f"\n{IMG_CHECK}\n</body>\n</html>\n")
