"""Plain-text output of the command line: one function per result, tables for lists."""

from __future__ import annotations

import json
from collections.abc import Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in cells]
    return "\n".join(lines)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def init(r) -> str:
    if r.before is None:
        return f"{r.url}: created schema {r.after}"
    if r.before == r.after:
        return f"{r.url}: schema {r.after} is up to date"
    return f"{r.url}: upgraded schema {r.before} -> {r.after}"


def add(r) -> str:
    space = f"{r.model}, dimension {r.dim}" if r.model else f"vectors of dimension {r.dim}"
    text = (f"{r.source}: {r.rows} rows ({space}): {r.added} added, {r.changed} changed, "
            f"{r.restored} restored, {r.unchanged} unchanged"
            + (f", {r.meta_updated} with new metadata" if r.meta_updated else "")
            + (f", {r.reembedded} others re-embedded" if r.reembedded else ""))
    if r.texts:
        text += f"; embedded {plural(r.embedded, 'text')} in {r.seconds:.1f} s"
    elif r.embedded:
        text += f"; stored {plural(r.embedded, 'vector')} in {r.seconds:.1f} s"
    return text


def items(r) -> str:
    counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in r.counts.items())
    if not r.rows:
        return counts
    listed = table(["key", "state", "model", "dim", "dtype", "updated"],
                   [[x.key, "removed" if x.removed else "live", x.model or "(vectors)", x.dim,
                     x.dtype, x.updated_at.strftime("%Y-%m-%d %H:%M")] for x in r.rows])
    return counts + "\n" + listed


def train(r) -> str:
    v = r.version
    sizes = v.space.sizes
    lines = [f"trained {v.label} (draft): {r.items} items, {len(sizes)} levels, "
             f"codebook sizes {'x'.join(map(str, sizes))}, {v.residual} residuals",
             f"raw collision rate {r.raw_collision_rate:.4f} (nearest codes, before "
             f"collision handling); semantic-unique share "
             f"{v.stats.get('semantic_unique_share', 0):.2%} after {v.params.get('collisions')}"
             f"{' (moved ' + str(v.stats['moved']) + ')' if v.stats.get('moved') else ''}, "
             f"largest disambiguation number {v.largest_disambiguation} (at most "
             f"{v.max_disambiguation} ever: {v.vocabulary_size} tokens), {r.seconds:.2f} s"]
    if "reconstruction_error" in v.stats:
        lines.append(f"relative reconstruction error {v.stats['reconstruction_error']:.4f}")
    stable = v.stats.get("stability")
    if stable:
        depths = ", ".join(f"depth {d + 1} {x:.1%}" for d, x in enumerate(stable["same_codes"]))
        lines.append(f"stability against version {stable['parent']}: of its {stable['items']} "
                     f"items, {stable['same_id']:.1%} keep their full ID ({depths})")
    lines += [f"warning: {w}" for w in r.warnings]
    lines.append(f"next: registry freeze {v.number} && registry activate {v.number}")
    return "\n".join(lines)


def change(r) -> str:
    if r.action == "delete":
        return f"deleted draft {r.version.label}: its codebooks and IDs are gone, its " \
               f"number {r.version.number} is never given again"
    if r.action in ("freeze", "retire"):
        done = {"freeze": "froze", "retire": "retired"}[r.action]
        state = {"freeze": "frozen", "retire": "retired"}[r.action]
        return f"{done} {r.version.label}" if r.changed else \
            f"{r.version.label} was already {state}"
    alias = r.alias
    if not r.changed:
        return f"{alias} already points at {r.version.label}"
    before = "" if r.previous is None else f" (was version {r.previous})"
    return f"{alias} -> {r.version.label}{before}"


def assign(r) -> str:
    return f"assigned {plural(r.assigned, 'new item')} in {r.version.label} ({r.seconds:.2f} s)"


def rollback(r) -> str:
    return (f"{r.alias} -> {r.version.label} (was version {r.previous}); assigned "
            f"{plural(r.assigned, 'new item')} in it")


def _meta(rec) -> str:
    return "" if rec.metadata is None else "\t" + json.dumps(rec.metadata, ensure_ascii=False,
                                                             sort_keys=True)


def get(r) -> str:
    """Tab-separated key, ID, (removed), metadata; nothing for keys without an ID."""
    return "\n".join(f"{rec.key}\t{rec.id}" + ("\t(removed)" if rec.removed else "")
                     + _meta(rec) for rec in r.records)


def lookup(r) -> str:
    if not r.records:
        return f"no items under {r.query} in version {r.version}"
    lines = [f"{rec.id}\t{rec.key}" + ("\t(removed)" if rec.removed else "") + _meta(rec)
             for rec in r.records]
    if r.more:
        total = "" if r.total is None else f"{r.total} items under {r.query} in all; "
        lines.append(f"... {total}raise --limit to see more")
    elif r.kind == "prefix":
        lines.append(f"{plural(len(r.records), 'item')} under {r.query}")
    return "\n".join(lines)


def resolved(row: dict) -> str:
    """One resolved input, tab-separated: input, status, key, ID, count, then metadata (as
    JSON) and nearest IDs (key=ID, comma-separated) where asked for."""
    # an input's own tabs and line breaks would split its row: written as \t and \n
    shown = row["input"].replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
    cells = [shown, row["status"], row["key"] or "-", row["id"] or "-", str(row["count"])]
    if "metadata" in row:
        cells.append("-" if row["metadata"] is None else
                     json.dumps(row["metadata"], ensure_ascii=False, sort_keys=True))
    if "nearest" in row:
        cells.append(",".join(f"{n['key']}={n['id']}" for n in row["nearest"]) or "-")
    return "\t".join(cells)


def versions(rows) -> str:
    if not rows:
        return "no versions yet: run `registry train`"
    return table(
        ["version", "name", "state", "aliases", "levels x k", "max d", "tokens", "residual",
         "collisions", "items now", "unique at train", "created"],
        [[s.version.number, s.version.name or "-", s.version.state,
          ",".join(s.version.aliases) or "-",
          "x".join(map(str, s.version.space.sizes)), s.version.max_disambiguation,
          s.version.vocabulary_size, s.version.residual, s.version.collisions, s.items,
          pct(s.version.stats.get("semantic_unique_share")),
          s.version.created_at.strftime("%Y-%m-%d %H:%M")] for s in rows])


def diff(r) -> str:
    lines = [f"version {r.v1.number} -> version {r.v2.number}: {r.common} items in both, "
             f"{r.only_v1} only in {r.v1.number}, {r.only_v2} only in {r.v2.number}"]
    headers = ["depth", "churn"] + (["churn after alignment"] if r.aligned else []) + \
        ["centroid movement (mean / max)"]
    rows = []
    for d, c in enumerate(r.churn):
        move = r.movement[d]
        moved = "-" if move["mean"] is None else f"{move['mean']:.4f} / {move['max']:.4f}"
        rows.append([d + 1, pct(c)] + ([pct(r.aligned_churn[d])] if r.aligned else [])
                    + [moved])
    lines.append(table(headers, rows))
    if r.aligned:
        lines.append(f"version {r.v2.number} was not trained from version {r.v1.number}: its "
                     "labels were matched to version "
                     f"{r.v1.number}'s, level by level, before the second churn column")
    if r.remap:
        lines.append(f"wrote key, old ID, new ID to {r.remap}")
    return "\n".join(lines)


def drift(r) -> str:
    d = r.drift
    if d is None:
        return (f"version {r.version.number} (trained on {r.reference} items): "
                + r.to_dict()["reasons"][0])
    what = (f"version {r.against.number}'s training items against version "
            f"{r.version.number}'s" if r.against else
            f"{d.compared} items assigned into version {r.version.number} after training, "
            f"against the {d.reference} it was trained on")
    t = d.thresholds()
    rows = [[lvl + 1, f"{js:.4f}", f"{fl:.4f}", f"{js / fl:.1f}x" if fl > 0 else "-"]
            for lvl, (js, fl) in enumerate(zip(d.js, d.floor, strict=True))]
    lines = [what, table(["level", "JS divergence", "noise floor", "ratio"], rows),
             "quantisation error ratio "
             + ("-" if d.error_ratio is None else f"{d.error_ratio:.3f}")
             + f"; raw collision rate (nearest codes, before collision handling) "
             f"{d.collision_before:.4f} -> {d.collision_after:.4f}"]
    for title, group in (("grew most", d.grew), ("shrank most", d.shrank)):
        if group:
            lines.append(f"level-1 codes that {title}:")
            lines += [f"  {c.code:>4}: {c.before:.2%} -> {c.after:.2%}  e.g. "
                      f"{', '.join(c.examples)}" for c in group]
    lines.append(f"verdict: {d.verdict}" + (f" ({'; '.join(d.reasons)})" if d.reasons else ""))
    lines.append(f"thresholds: watch above {t['js_vs_floor_watch']}x / retrain above "
                 f"{t['js_vs_floor_retrain']}x the noise floor; quantisation error ratio watch "
                 f"above {t['error_ratio_watch']}, retrain above {t['error_ratio_retrain']}; "
                 f"at least {t['min_new_items']} new items")
    return "\n".join(lines)


def stats(r) -> str:
    f = r.figures
    lines = [f"version {r.version.number}: {f['items']} items",
             f"raw collision rate {f['raw_collision_rate']:.4f} (nearest codes, before "
             f"collision handling); after {r.version.collisions}: semantic-unique share "
             f"{f['semantic_unique_share']:.2%}, largest bucket {f['largest_bucket']}, "
             f"bucket-size Gini {f['bucket_gini']:.3f}",
             f"largest disambiguation number {f['largest_disambiguation']} of at most "
             f"{f['max_disambiguation']} (the version's limit: a vocabulary of "
             f"{f['vocabulary_tokens']} tokens)"]
    if "reconstruction_error" in f:
        lines.append(f"relative reconstruction error {f['reconstruction_error']:.4f}")
    agree = f.get("neighbourhood_agreement", [])
    rows = [[lvl + 1, k, f"{u['used']:.1%}", f"{u['perplexity']:.1f}",
             f"{agree[lvl]:.3f}" if lvl < len(agree) else "-"]
            for lvl, (u, k) in enumerate(zip(f["levels"], r.version.space.sizes, strict=True))]
    lines.append(table(["level", "k", "codes used", "perplexity",
                         "neighbourhood agreement"], rows))
    if agree:
        lines.append(f"neighbourhood agreement at depth d: share of the 10 nearest neighbours "
                     f"of {f['agreement_sample']} sampled items that share their first d codes")
    return "\n".join(lines)


def history(events) -> str:
    if not events:
        return "no events yet"
    return table(["when", "action", "version", "other", "details", "reason", "by"],
                  [[e.at.strftime("%Y-%m-%d %H:%M:%S"), e.action, e.version, e.other,
                    ", ".join(f"{k}={v}" for k, v in (e.params or {}).items()
                              if k != "codebook_sizes") or "-", e.reason or "-",
                    e.actor or "-"]
                   for e in events])


BY_STEP = {"init": init, "add": add, "train": train, "freeze": change,
         "activate": change, "assign": assign, "get": get,
         "lookup": lookup, "versions": versions}


def verify(report) -> str:
    """One line per violation and its rows, or one line saying all is well."""
    if report.ok:
        return (f"ok: {plural(report.versions, 'version')}, {plural(report.ids, 'ID')}; "
                "checked "
                + ", ".join(report.checks))
    lines = [f"{plural(len(report.violations), 'violation')}:"]
    for v in report.violations:
        lines.append(f"  [{v.check}] {v.message}")
        lines += ["      " + ", ".join(f"{k}={val}" for k, val in row.items()) for row in v.rows]
    return "\n".join(lines)
