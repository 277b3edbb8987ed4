"""What the HTML reports (`sslsep report run`, `sslsep report sweep`) share: matplotlib
figures embedded as PNG data URIs, one style, one page frame. A page is one self-contained
file (no script, no network): it opens offline, from a local run directory or downloaded
from s3://.

    fig, ax = figure()              # the reports' size and style
    ...                             # matplotlib as usual
    html = img(fig, "Title")        # <figure> with the PNG inline; the figure is closed
    page("Run x", [section(...)])   # the whole document
"""

from __future__ import annotations

import base64
import html
import io

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#7f7f7f", "#bcbd22")
STYLE = ("body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1500px;color:#222;padding:0 16px}"
         "h1{margin-bottom:4px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}"
         "figure{display:inline-block;margin:8px;vertical-align:top}"
         "figure img{max-width:100%}figcaption{font-weight:bold;margin-bottom:4px}"
         "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}"
         "th{background:#f4f4f4}.note{font-size:13px;color:#555}.missing{color:#a33;font-size:13px}"
         "pre{background:#f7f7f7;padding:8px;white-space:pre-wrap;font-size:13px}"
         ".clip{border:1px solid #ddd;border-radius:6px;padding:8px;margin:12px 0}"
         ".tiles{display:flex;flex-wrap:wrap;gap:10px}.tile{width:230px;font-size:12px}"
         ".tile img{width:230px;height:auto;display:block}.tile audio{width:230px;height:32px}")


def esc(x) -> str:
    return html.escape(str(x))


def figure(width: float = 6.4, height: float = 3.2, ncols: int = 1, nrows: int = 1):
    """A matplotlib figure of the reports' style (Agg: no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    with plt.rc_context({"axes.prop_cycle": matplotlib.cycler(color=PALETTE), "axes.grid": True,
                         "grid.alpha": 0.3, "font.size": 9, "axes.spines.top": False,
                         "axes.spines.right": False}):
        return plt.subplots(nrows, ncols, figsize=(width, height), dpi=100, squeeze=False,
                            layout="constrained")


def png_uri(fig, dpi: int = 100) -> str:
    """The figure as a PNG data URI; the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def img(fig, title: str, note: str = "", css: str = "chart") -> str:
    """A <figure> with the matplotlib figure inline as PNG (data-title names it for tests)."""
    return (f'<figure><figcaption>{esc(title)}</figcaption><img class="{css}" data-title="{esc(title)}" '
            f'alt="{esc(title)}" src="{png_uri(fig)}">{f"<p class=note>{esc(note)}</p>" if note else ""}</figure>')


def empty(title: str, why: str) -> str:
    """The place of a figure that has nothing to show, saying why."""
    return f'<figure><figcaption>{esc(title)}</figcaption><p class="missing">{esc(why)}</p></figure>'


def table(head: list[str], rows: list[list], table_id: str = "") -> str:
    ident = f' id="{esc(table_id)}"' if table_id else ""
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return (f"<table{ident}><thead><tr>{''.join(f'<th>{esc(h)}</th>' for h in head)}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


def page(title: str, body: list[str]) -> str:
    """The whole document: one file, no script, no network."""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>")
