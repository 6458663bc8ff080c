"""The tour's report as one self-contained HTML page: `render_html` of the blocks of `markdown.report_blocks`."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from lvmjax.tour.figures import FIGURES_DIR

__all__ = ["STYLE", "render_html"]

STYLE = (
    "body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em;line-height:1.4}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.2em .6em;"
    "text-align:right}td:first-child,th:first-child{text-align:left}figure{margin:1.5em 0}"
    "img{max-width:100%}figcaption{font-size:.9em;color:#444}"
)


def render_html(blocks: list[tuple], directory: Path) -> str:
    """One self-contained page: the figures, read from `directory`/FIGURES_DIR, are embedded as base64 PNG
    data URIs."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{html.escape(blocks[0][2])}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
    ]
    for block in blocks:
        if block[0] == "h":
            parts.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
        elif block[0] == "p":
            parts.append(f"<p>{html.escape(block[1])}</p>")
        elif block[0] == "table":
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(cell)}</th>" for cell in block[1]) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in block[2]]
            parts.append("</table>")
        elif block[0] == "figure":
            encoded = base64.b64encode((directory / FIGURES_DIR / f"{block[1]}.png").read_bytes()).decode("ascii")
            parts.append(
                f'<figure><img src="data:image/png;base64,{encoded}" alt="{html.escape(block[1])}">'
                f"<figcaption>{html.escape(block[2])}</figcaption></figure>"
            )
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)
