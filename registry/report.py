"""Self-contained HTML reports for ``diff`` and ``drift``: tables and inline SVG charts, no
scripts and nothing fetched, so that the file opens anywhere."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

import numpy as np

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}
.verdict{font-size:1.2em;font-weight:600}.ok{color:#1a7f37}.watch{color:#9a6700}
.retrain{color:#cf222e}.legend span{display:inline-block;width:1em;height:.8em;margin:0 .3em}
"""
_A, _B = "#4c78a8", "#f58518"


def _page(title: str, body: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"{body}<p><small>written by registry, {stamp}</small></p></body></html>")


# a figure: 12, -0.5, 3.1x, 12.50%, 0.1234 / 0.2, or "-" for none; anything else is text
_FIGURE = re.compile(r"-|[-+]?[0-9][0-9.,]*(?:%|x)?(?: / [-+]?[0-9][0-9.,]*(?:%|x)?)?")


def _table(headers: list[str], rows: list[list[object]]) -> str:
    """Figures right-aligned, text (such as package names, which may start with a digit:
    389-ds-base) left-aligned."""
    def side(cell: object) -> str:
        return "" if _FIGURE.fullmatch(str(cell)) else " class=l"

    # a header sits over its column as the column's first cell does
    head = "".join(f"<th{side(rows[0][i]) if rows else ''}>{html.escape(str(h))}</th>"
                   for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td{side(c)}>{html.escape(str(c))}</td>" for c in r)
                   + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def bars(a: np.ndarray, b: np.ndarray, label_a: str, label_b: str, width: int = 1000,
         height: int = 160) -> str:
    """Two code-usage histograms side by side, code by code, as one SVG: a y axis of shares
    with grid lines, the codes along the x axis, and each bar's share on hover (and printed
    above it where there are few codes)."""
    k = max(len(a), len(b))
    a = np.pad(a, (0, k - len(a)))
    b = np.pad(b, (0, k - len(b)))
    top = _nice_top(float(max(a.max(initial=0), b.max(initial=0))))
    left, below, above = 48, 34, 14  # room for the axis labels and the values over the bars
    plot = width - left - 4
    slot = plot / k
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' "
             f"height='{height + below + above}' role='img' font-size='11'><title>share of "
             f"items per code: {html.escape(label_a)} vs {html.escape(label_b)}</title>"]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = above + height * (1 - tick)
        parts.append(f"<line x1='{left}' x2='{width - 4}' y1='{y:.1f}' y2='{y:.1f}' "
                     f"stroke='{'#999' if tick == 0 else '#e4e4e4'}'/>"
                     f"<text x='{left - 4}' y='{y + 4:.1f}' text-anchor='end'>"
                     f"{tick * top:.{_decimals(top)}%}</text>")
    for i in range(k):
        for j, (v, colour) in enumerate(((a[i], _A), (b[i], _B))):
            h = height * float(v) / top
            x = left + i * slot + j * slot / 2
            w = max(slot / 2 - 0.3, 0.3)
            parts.append(f"<rect x='{x:.2f}' y='{above + height - h:.2f}' width='{w:.2f}' "
                         f"height='{h:.2f}' fill='{colour}'><title>code {i}, "
                         f"{html.escape(label_a if j == 0 else label_b)}: {float(v):.2%}"
                         f"</title></rect>")
            if k <= 16:
                parts.append(f"<text x='{x + w / 2:.1f}' y='{above + height - h - 3:.1f}' "
                             f"text-anchor='middle' font-size='9'>{float(v):.1%}</text>")
    step = max(1, _nice_step(k))
    for i in range(0, k, step):
        x = left + (i + 0.5) * slot
        parts.append(f"<text x='{x:.1f}' y='{above + height + 14}' text-anchor='middle'>"
                     f"{i}</text>")
    parts.append(f"<text x='{left + plot / 2:.1f}' y='{above + height + 30}' "
                 "text-anchor='middle'>code</text></svg>")
    legend = (f"<div class=legend><span style='background:{_A}'></span>{html.escape(label_a)}"
              f"<span style='background:{_B}'></span>{html.escape(label_b)}</div>")
    return legend + "".join(parts)


def _nice_top(x: float) -> float:
    """The y axis's top: the largest share rounded up to 1, 2 or 5 times a power of ten."""
    if x <= 0:
        return 1.0
    power = 10 ** np.floor(np.log10(x))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= x))


def _decimals(top: float) -> int:
    """Decimals of the percentage labels that show the axis's quarter steps exactly."""
    quarter = top * 25  # in per cent
    return next(d for d in range(6) if abs(round(quarter * 10**d) - quarter * 10**d) < 1e-6)


def _nice_step(k: int) -> int:
    """Every how many codes an x axis label goes: about 16 labels."""
    raw = k / 16
    return int(next(m for m in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
                    if m >= raw))


def diff_html(r) -> str:
    rows = []
    for d, c in enumerate(r.churn):
        move = r.movement[d]
        rows.append([d + 1, f"{c:.2%}", "-" if r.aligned_churn is None
                     else f"{r.aligned_churn[d]:.2%}",
                     "-" if move["mean"] is None else f"{move['mean']:.4f}",
                     "-" if move["max"] is None else f"{move['max']:.4f}"])
    note = ""
    if r.aligned:
        note = (f" Version {r.v2.number} was not trained from version {r.v1.number}: its "
                f"labels were matched to version {r.v1.number}'s, level by level, before "
                "the aligned churn.")
    body = (f"<p>{r.common} items in both versions, {r.only_v1} only in version "
            f"{r.v1.number}, {r.only_v2} only in version {r.v2.number}.{note}</p>"
            + _table(["depth", "churn", "churn after alignment", "centroid movement (mean)",
                      "centroid movement (max)"], rows))
    for level, (ua, ub) in enumerate(r.usage, start=1):
        body += f"<h2>Level {level}: code usage</h2>" + bars(
            ua, ub, f"version {r.v1.number}", f"version {r.v2.number}")
    return _page(f"registry diff: version {r.v1.number} -> version {r.v2.number}", body)


def drift_html(r) -> str:
    d = r.drift
    if d is None:
        reason = html.escape(r.to_dict()["reasons"][0])
        return _page(f"registry drift: version {r.version.number}",
                     f"<p class='verdict'>verdict: none</p><p>Version {r.version.number} was "
                     f"trained on {r.reference} items; {reason}.</p>")
    subject = (f"version {r.against.number}'s training items" if r.against
               else f"{d.compared} items assigned after training")
    rows = [[lvl + 1, f"{js:.4f}", f"{fl:.4f}", f"{js / fl:.1f}x" if fl > 0 else "-"]
            for lvl, (js, fl) in enumerate(zip(d.js, d.floor, strict=True))]
    t = d.thresholds()
    body = (f"<p class='verdict {d.verdict}'>verdict: {d.verdict}</p>"
            + (f"<p>{html.escape('; '.join(d.reasons))}</p>" if d.reasons else "")
            + f"<p>{html.escape(subject)} against the {d.reference} items version "
            f"{r.version.number} was trained on. Quantisation error ratio: "
            f"{'-' if d.error_ratio is None else f'{d.error_ratio:.3f}'}; raw collision rate "
            f"(nearest codes, before collision handling) {d.collision_before:.4f} &rarr; "
            f"{d.collision_after:.4f}.</p>"
            + _table(["level", "JS divergence", "noise floor", "ratio"], rows)
            + f"<p><small>Thresholds: watch above {t['js_vs_floor_watch']}x and retrain above "
            f"{t['js_vs_floor_retrain']}x the noise floor; quantisation error ratio watch above "
            f"{t['error_ratio_watch']}, retrain above {t['error_ratio_retrain']}.</small></p>")
    for title, group in (("Level-1 codes that grew most", d.grew),
                         ("Level-1 codes that shrank most", d.shrank)):
        if group:
            body += f"<h2>{title}</h2>" + _table(
                ["code", "share before", "share after", "examples"],
                [[c.code, f"{c.before:.2%}", f"{c.after:.2%}", ", ".join(c.examples)]
                 for c in group])
    for level, (ua, ub) in enumerate(zip(d.usage_a, d.usage_b, strict=True), start=1):
        body += f"<h2>Level {level}: code usage</h2>" + bars(ua, ub, "trained on", "new items")
    return _page(f"registry drift: version {r.version.number}", body)
