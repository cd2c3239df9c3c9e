"""Self-contained HTML reports for ``diff`` and ``drift``: tables and inline SVG charts, no
scripts and nothing fetched, so that the file opens anywhere."""

from __future__ import annotations

import html
from datetime import UTC, datetime

import numpy as np

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:right}th{background:#f3f3f3}td.l{text-align:left}
.verdict{font-size:1.2em;font-weight:600}.ok{color:#1a7f37}.watch{color:#9a6700}
.retrain{color:#cf222e}.legend span{display:inline-block;width:1em;height:.8em;margin:0 .3em}
"""
_A, _B = "#4c78a8", "#f58518"


def _page(title: str, body: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"{body}<p><small>written by registry, {stamp}</small></p></body></html>")


def _table(headers: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(
        f"<td{' class=l' if isinstance(c, str) and not c[:1].isdigit() else ''}>"
        f"{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def bars(a: np.ndarray, b: np.ndarray, label_a: str, label_b: str, width: int = 1000,
         height: int = 160) -> str:
    """Two code-usage histograms side by side, code by code, as one SVG."""
    k = max(len(a), len(b))
    a = np.pad(a, (0, k - len(a)))
    b = np.pad(b, (0, k - len(b)))
    top = float(max(a.max(initial=0), b.max(initial=0))) or 1.0
    slot = width / k
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height + 20}' "
             f"role='img'><title>share of items per code: {html.escape(label_a)} vs "
             f"{html.escape(label_b)}</title>"]
    for i in range(k):
        for j, (v, colour) in enumerate(((a[i], _A), (b[i], _B))):
            h = height * float(v) / top
            x = i * slot + j * slot / 2
            w = max(slot / 2 - 0.3, 0.3)
            parts.append(f"<rect x='{x:.2f}' y='{height - h:.2f}' width='{w:.2f}' "
                         f"height='{h:.2f}' fill='{colour}'><title>code {i}: {float(v):.2%}"
                         f"</title></rect>")
    parts.append(f"<text x='0' y='{height + 15}' font-size='11'>code 0</text>"
                 f"<text x='{width}' y='{height + 15}' font-size='11' text-anchor='end'>"
                 f"code {k - 1}</text></svg>")
    legend = (f"<div class=legend><span style='background:{_A}'></span>{html.escape(label_a)}"
              f"<span style='background:{_B}'></span>{html.escape(label_b)}</div>")
    return legend + "".join(parts)


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
    subject = (f"version {r.against.number}'s training items" if r.against
               else f"{d.compared} items assigned after training")
    rows = [[lvl + 1, f"{js:.4f}", f"{fl:.4f}", f"{js / fl:.1f}x" if fl > 0 else "-"]
            for lvl, (js, fl) in enumerate(zip(d.js, d.floor, strict=True))]
    t = d.thresholds()
    body = (f"<p class='verdict {d.verdict}'>verdict: {d.verdict}</p>"
            + (f"<p>{html.escape('; '.join(d.reasons))}</p>" if d.reasons else "")
            + f"<p>{html.escape(subject)} against the {d.reference} items version "
            f"{r.version.number} was trained on. Quantisation error ratio: "
            f"{'-' if d.error_ratio is None else f'{d.error_ratio:.3f}'}; collision rate "
            f"{d.collision_before:.4f} &rarr; {d.collision_after:.4f}.</p>"
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
