"""report/render.py: report.md and report.html from the same blocks, with no Ray and no results."""

from __future__ import annotations

import base64
import math
from pathlib import Path

import pandas as pd
import pytest
from helpers import md_rows

from fspbench.report import render

TABLE = pd.DataFrame({"arm": ["fsp | 2 stages", "scratch\nfull"], "acc": [81.304, math.nan],
                      "runs": [["a", "b"], None], "n": [5, 4]})
BLOCKS = [("h", 1, "Report: <smoke>"), ("p", "A **bold** claim about `fsp_loss` & \"its\" teacher."),
          ("list", ["first **one**", "second"]), ("list", []), ("table", TABLE),
          ("figure", "looks", "Each claim's looks")]


def test_markdown_blocks_tables_and_figures() -> None:
    md = render.markdown(BLOCKS)
    assert md.startswith("# Report: <smoke>\n\nA **bold** claim") and md.endswith("([SVG](figures/looks.svg))\n")
    assert "\n\n- first **one**\n- second\n\n- none\n\n|" in md  # one blank line between blocks
    assert "![Each claim's looks](figures/looks.png)\n\n*Each claim's looks* ([SVG](figures/looks.svg))" in md
    head, sep, *rows = md_rows(md)
    assert head == ["arm", "acc", "runs", "n"] and all(set(c) <= set(":-") for c in sep)
    assert rows == [["fsp \\| 2 stages", "81.30", "a, b", "5"], ["scratch full", "–", "–", "4"]]


def test_html_is_self_contained_and_escaped(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n not really an image"
    (tmp_path / "looks.png").write_bytes(png)
    page = render.html_page(BLOCKS, "FSP report: <smoke>", tmp_path)
    assert page.startswith("<!DOCTYPE html>\n") and page.endswith("</body>\n</html>\n")
    assert "<title>FSP report: &lt;smoke&gt;</title>" in page and "<h1>Report: &lt;smoke&gt;</h1>" in page
    assert "<p>A <strong>bold</strong> claim about <code>fsp_loss</code> &amp; &#34;its&#34; teacher.</p>" in page
    assert "<ul><li>first <strong>one</strong></li><li>second</li></ul>\n<ul><li>none</li></ul>" in page
    assert ("<thead><tr><th>arm</th><th>acc</th><th>runs</th><th>n</th></tr></thead><tbody>"
            "<tr><td>fsp | 2 stages</td><td>81.30</td><td>a, b</td><td>5</td></tr>") in page
    assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in page
    assert "http://" not in page and "https://" not in page and 'id="img-check"' in page


def test_unknown_block_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown block kind 'quote'"):
        render.markdown([("quote", "x")])
    with pytest.raises(ValueError, match="unknown block kind"):
        render.html_page([("quote", "x")], "t", tmp_path)
