"""A report as a list of blocks (headings, paragraphs, tables, bullets, images), rendered to Markdown or HTML.

Tables take numeric cells and a direction per column; the winner of each column is shown in bold in both outputs.
"""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Union

Better = Literal["high", "low"] | None


@dataclass
class Cell:
    """One table cell: its text, and the value the column's winner is chosen by (None: not ranked)."""

    text: str
    value: float | None = None


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    text: str


@dataclass
class Key(Para):
    """A paragraph that also goes into the report's key findings at the top."""


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Image:
    path: str
    alt: str


@dataclass
class Table:
    """Rows of cells under `header`; `better[i]` says whether column i's winner is the highest or lowest value."""

    header: list[str]
    rows: list[list[Cell | str]]
    better: list[Better] = field(default_factory=list)

    def winners(self) -> set[tuple[int, int]]:
        """(row, column) of each column's best value; ties all win; columns with fewer than two values have none."""
        out: set[tuple[int, int]] = set()
        for col, direction in enumerate(self.better):
            if direction is None:
                continue
            values = [(r, row[col].value) for r, row in enumerate(self.rows)
                      if isinstance(row[col], Cell) and row[col].value is not None and math.isfinite(row[col].value)]
            if len(values) < 2:
                continue
            pick = max if direction == "high" else min
            best = pick(v for _, v in values)
            out.update((r, col) for r, v in values if v == best)
        return out

    def texts(self) -> list[list[tuple[str, bool]]]:
        """Each cell's text and whether it is its column's winner."""
        wins = self.winners()
        return [[(c.text if isinstance(c, Cell) else c, (r, i) in wins) for i, c in enumerate(row)]
                for r, row in enumerate(self.rows)]


Block = Union[Heading, Para, Bullets, Image, Table]


def to_markdown(blocks: list[Block]) -> str:
    """The blocks as GitHub-flavoured Markdown (image paths relative to the report)."""
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Para):
            out += [b.text, ""]
        elif isinstance(b, Bullets):
            out += [f"- {item}" for item in b.items] + [""]
        elif isinstance(b, Image):
            out += [f"![{b.alt}]({b.path})", ""]
        else:
            out.append("| " + " | ".join(b.header) + " |")
            out.append("|" + "---|" * len(b.header))
            for row in b.texts():
                out.append("| " + " | ".join(f"**{t}**" if win else t for t, win in row) + " |")
            out.append("")
    return "\n".join(out)


def _inline(text: str) -> str:
    """Escape text and render the inline Markdown the report uses: **bold** and `code`."""
    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td{white-space:nowrap}td:first-child,th:first-child{text-align:left}
img{max-width:100%;display:block;margin:1em 0}
code{background:#f3f3f3;padding:1px 3px}"""


def to_html(blocks: list[Block], title: str, base: Path) -> str:
    """The blocks as one self-contained HTML page: images (paths relative to `base`) inlined as base64 PNG."""
    body: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{_inline(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            body.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Bullets):
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Image):
            data = base64.b64encode((base / b.path).read_bytes()).decode("ascii")
            body.append(f'<img alt="{html.escape(b.alt)}" src="data:image/png;base64,{data}">')
        else:
            head = "".join(f"<th>{_inline(h)}</th>" for h in b.header)
            rows = "".join("<tr>" + "".join(f"<td>{'<strong>' if win else ''}{_inline(t)}{'</strong>' if win else ''}"
                                            "</td>" for t, win in row) + "</tr>" for row in b.texts())
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
