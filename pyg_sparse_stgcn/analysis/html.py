"""One self-contained HTML page per analysis: summary, tables and every figure embedded (no network)."""
from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["Section", "render_page", "table_html"]

_CSS = """
body{font-family:sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;font-size:.8em;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#555}
pre{background:#f7f7f7;padding:.6em;font-size:.8em;overflow-x:auto}
"""


class Section:
    """One section of the page: a heading, optional text, tables ``(caption, rows)`` and figures
    ``(caption, png bytes)``."""

    def __init__(self, title: str, text: str = "", tables: Sequence[tuple[str, Sequence[Mapping[str, Any]]]] = (),
                 figures: Sequence[tuple[str, bytes]] = ()) -> None:
        self.title, self.text = title, text
        self.tables = list(tables)
        self.figures = list(figures)


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def table_html(rows: Sequence[Mapping[str, Any]], caption: str = "") -> str:
    """An HTML table of ``rows`` (dicts with the same keys)."""
    if not rows:
        return f"<p><em>{html.escape(caption)}: empty</em></p>"
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_page(title: str, sections: Sequence[Section], links: Sequence[tuple[str, str]] = ()) -> str:
    """The page's HTML text; figures are embedded as base64 PNG data URIs, so the file stands alone.

    Args:
        title (str): Page title.
        sections (sequence of Section): The content.
        links (sequence of (str, str), optional): ``(relative path, text)`` of files written beside the page
            (tables as CSV/JSON).
    """
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    if links:
        parts.append("<p>Files: " + " · ".join(f"<a href='{html.escape(p)}'>{html.escape(t)}</a>"
                                               for p, t in links) + "</p>")
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.text:
            parts.append(f"<pre>{html.escape(s.text)}</pre>")
        for cap, rows in s.tables:
            parts.append(table_html(rows, cap))
        for cap, png in s.figures:
            data = base64.b64encode(png).decode("ascii")
            parts.append(f"<figure><img alt='{html.escape(cap)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{html.escape(cap)}</figcaption></figure>")
    parts.append("</body></html>\n")
    return "".join(parts)
