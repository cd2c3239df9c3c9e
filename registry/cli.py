"""The ``registry`` command line: parse options, call :class:`registry.api.Registry`, format.

No logic lives here. Registry errors become one-line ``Error: ...`` messages with exit code 1
(JSON ones under ``--json``), the library's parameter names in them put as this command's
options, once, in :class:`RegistryGroup`. Defaults shown in the help come from
:mod:`registry.defaults`, as the library's do.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import click
from sqlalchemy.exc import DBAPIError

from . import defaults
from . import formatting as fmt
from .api import Registry
from .errors import InputError, NotFoundError, RegistryError, StateError, extra_hint
from .store.db import first_line
from .version import __version__


class CommandError(click.ClickException):
    """A failed command's one line: ``Error: ...`` on standard error, or under ``--json``
    one JSON object there, ``{"error": KIND, "detail": MESSAGE}``."""

    def __init__(self, kind: str, message: str, as_json: bool, exit_code: int = 1):
        super().__init__(" ".join(message.split()))
        self.kind, self.as_json, self.exit_code = kind, as_json, exit_code

    def show(self, file=None) -> None:
        if not self.as_json:
            return super().show(file)
        click.echo(json.dumps({"error": self.kind, "detail": self.message}), err=True)


class RegistryGroup(click.Group):
    """Translates the library's errors, once, into click's one-line errors (JSON ones for a
    command given ``--json``, usage errors included)."""

    def invoke(self, ctx: click.Context):
        as_json = "--json" in ctx.args  # the command's arguments: parsed after this
        try:
            return super().invoke(ctx)
        except RegistryError as e:
            raise CommandError(e.code, self._in_flags(ctx, e), as_json) from None
        except DBAPIError as e:
            # not a user error, but still one line: the database refused something
            raise CommandError("database", f"database error: {first_line(e)}",
                               as_json) from None
        except click.UsageError as e:
            if not as_json:
                raise
            raise CommandError("usage", e.format_message(), True, e.exit_code) from None

    def _in_flags(self, ctx: click.Context, error: RegistryError) -> str:
        """The error's message with the library's parameter names (``niter:`` leading an
        InputError's, `refine` inside any) as the command's options (--niter, --refine)."""
        command = self.get_command(ctx, ctx.invoked_subcommand or "")
        names = {} if command is None else {
            p.name: (p.opts[0] if isinstance(p, click.Option) else p.human_readable_name)
            for p in command.params if p.name}
        message = str(error)
        param = getattr(error, "param", None)
        if param is not None and message.startswith(f"{param}: "):
            # a parameter this command has no option for (the demo's model) goes unnamed
            message = (names[param] + ": " if param in names else "") + \
                message[len(param) + 2:]
        return _PARAM.sub(lambda m: names.get(m.group(1), m.group(0)), message)


# a parameter's name as library messages write it: `refine`
_PARAM = re.compile(r"`([a-z_][a-z0-9_]*)`")


class SizesType(click.ParamType):
    """``256`` (every level) or ``256,64,16`` (one size per level)."""

    name = "K[,K...]"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, list)):
            return value
        parts = [p.strip() for p in str(value).split(",")]
        try:
            sizes = [int(p) for p in parts]
        except ValueError:
            self.fail(f"{value!r} is not a size or a comma-separated list of sizes", param, ctx)
        return sizes[0] if len(sizes) == 1 else sizes


def _json_option(f: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print the result as JSON instead of text.")(f)


def _metadata_option(f: Callable) -> Callable:
    return click.option("--metadata", "-m", is_flag=True,
                        help="Show each item's metadata (the columns its file had beside the "
                             "key and text).")(f)


def _version_option(help: str = "Version number, name or alias (default: the active "
                                 "version).") -> Callable[[Callable], Callable]:
    return click.option("--version", "-v", "version", default=None, metavar="VERSION",
                        help=help)


def _emit(as_json: bool, data: object, text: Callable[[], str]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(text())


class _Progress:
    """A click progress bar with items/s and an ETA, on a terminal only."""

    def __init__(self, label: str):
        self.label = label
        self.bar = None
        self.start = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr,
                                         show_eta=True, show_pos=True,
                                         item_show_func=lambda _: self._rate())
            self.bar.__enter__()
            self.start = time.perf_counter()
        self.bar.update(done - self.bar.pos)

    def _rate(self) -> str:
        elapsed = time.perf_counter() - self.start
        return f"{self.bar.pos / elapsed:.0f} items/s" if self.bar and elapsed > 0 else ""

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


@contextmanager
def _progress(wanted: bool, label: str) -> Iterator[_Progress | None]:
    """A progress callback when ``wanted`` and stderr is a terminal, else None."""
    if not (wanted and sys.stderr.isatty()):
        yield None
        return
    bar = _Progress(label)
    try:
        yield bar
    finally:
        bar.close()


# commands that only read IDs and versions, where start-up is most of the run
LOOKUP_COMMANDS = frozenset({"get", "lookup", "resolve", "versions"})
# commands that work through large arrays (see registry.allocator)
ARRAY_COMMANDS = frozenset({"add", "train", "assign", "diff", "drift", "stats", "verify",
                            "demo"})


@click.group(cls=RegistryGroup)
@click.version_option(__version__, "--version", prog_name="registry",
                      message="%(prog)s %(version)s")
@click.option("--db", "db_url", default=None, metavar="URL",
              help="Database URL: sqlite:///FILE or postgresql://USER@HOST/DB "
                   "(default: $REGISTRY_DB, else sqlite:///registry.db).")
@click.pass_context
def cli(ctx: click.Context, db_url: str | None) -> None:
    """A registry of semantic IDs: versioned residual k-means codes for catalog items."""
    if ctx.invoked_subcommand in ARRAY_COMMANDS:
        from .allocator import tune

        tune()
    reg = Registry(db_url, lookups_only=ctx.invoked_subcommand in LOOKUP_COMMANDS)
    ctx.obj = reg
    ctx.call_on_close(reg.close)


pass_registry = click.make_pass_decorator(Registry)


@cli.command()
@_json_option
@pass_registry
def init(reg: Registry, as_json: bool) -> None:
    """Create the registry's tables in a new database, or upgrade an older one."""
    r = reg.init()
    _emit(as_json, r.to_dict(), lambda: fmt.init(r))


@cli.command()
@click.argument("file", type=click.Path(path_type=str))
@click.option("--key", default=None, metavar="COL",
              help="Column holding each item's unique key [default: key].")
@click.option("--text", default=None, metavar="COL_OR_TEMPLATE",
              help="Column holding each item's text, or a template over columns such as "
                   "'{title}. {description}'. The text is embedded with --model.")
@click.option("--vector", default=None, metavar="COL",
              help="Column holding each item's vector (a list of numbers), instead of --text.")
@click.option("--keys", "keys_file", default=None, metavar="KEYS.txt",
              type=click.Path(dir_okay=False, path_type=str),
              help="For a .npy matrix: a text file with one key per row of the matrix.")
@click.option("--model", default=None, metavar="NAME_OR_PATH",
              help="For --text: a local sentence-transformers model folder [default: the "
                   "bundled all-MiniLM-L6-v2]. Nothing is downloaded.")
@click.option("--vector-model", default=None, metavar="NAME_OR_PATH",
              help="For vectors: the model they come from (all-MiniLM-L6-v2, a local model "
                   "folder, or any name), so that they join the items that model embedded; "
                   "checked against its dimension where its files are here.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None,
              help=f"For --text: where the model runs [default: {defaults.DEVICE}].")
@click.option("--batch-size", type=int, default=None,
              help=f"For --text: texts per model call [default: {defaults.EMBED_BATCH}].")
@click.option("--backend", type=click.Choice(["torch", "onnx", "onnx-int8"]), default=None,
              help="For --text: how the model runs: torch, ONNX Runtime, or ONNX Runtime with "
                   "int8 weights (faster on CPU; its vectors form their own embedding space) "
                   f"[default: {defaults.BACKEND}]. ONNX needs the onnx extra; the model is "
                   "converted locally once.")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default=defaults.DTYPE,
              show_default=True, help="How embeddings are stored (float16 halves the space).")
@click.option("--reembed", is_flag=True,
              help="Embed every item again with --model: how a registry moves to another "
                   "model (needs the items' texts).")
@click.option("--commit-every", type=int, default=defaults.COMMIT_EVERY, show_default=True,
              help="Items embedded and written per transaction.")
@_json_option
@pass_registry
def add(reg: Registry, file: str, key: str | None, text: str | None, vector: str | None,
        keys_file: str | None, as_json: bool, **options) -> None:
    """Add or update items from FILE (JSONL, JSONL.GZ, CSV, Parquet, or .npy with --keys),
    or from a directory or quoted glob of Parquet shards ('out/part-*.parquet').

    The whole file (every shard) is checked first: a bad row stores nothing. Unchanged items
    are left alone and never embedded again; changed ones keep their existing IDs.
    Embeddings are written batch by batch (shards a record batch at a time, in bounded
    memory), so an interrupted run resumes where it stopped.
    """
    with _progress(not as_json, "embedding") as bar:
        r = reg.add_file(file, key=key, text=text, vector=vector, keys_file=keys_file,
                         progress=bar, **options)
    _emit(as_json, r.to_dict(), lambda: fmt.add(r))


@cli.command()
@click.argument("keys", nargs=-1)
@click.option("--file", "keys_file", default=None, type=click.Path(dir_okay=False, path_type=str),
              help="Remove the keys in this file: one per line, or the --key column of a "
                   "JSONL / CSV / Parquet file.")
@click.option("--key", default=None, metavar="COL",
              help="Key column of --file when it is a catalog file [default: key].")
@_json_option
@pass_registry
def remove(reg: Registry, keys: tuple[str, ...], keys_file: str | None, key: str | None,
           as_json: bool) -> None:
    """Remove items by KEY: they keep their IDs in existing versions, which are never given
    to another item, but get none in new versions. Adding them again brings them back."""
    from .ingest import read_keys

    if key is not None and keys_file is None:
        raise InputError("names the key column of `keys_file`; give that too, or leave it "
                         "out", param="key")
    wanted = list(keys) + (read_keys(keys_file, key or "key") if keys_file else [])
    r = reg.remove(wanted)
    _emit(as_json, r.to_dict(), lambda: (
        f"removed {fmt.plural(r.removed, 'item')}" + (
            f" ({r.already_removed} were already removed)" if r.already_removed else "")))


@cli.command(name="items")
@click.option("--status", type=click.Choice(["live", "removed", "all"]), default="live",
              show_default=True, help="Which items to list.")
@click.option("--changed-since", default=None, metavar="VERSION",
              help="Only items whose content changed after VERSION was trained.")
@click.option("--new-since", default=None, metavar="VERSION",
              help="Only items added after VERSION was trained.")
@click.option("--limit", "-n", type=int, default=defaults.ITEMS_LIMIT, show_default=True,
              help="Most items to list (0: counts only).")
@_json_option
@pass_registry
def items_cmd(reg: Registry, status: str, changed_since: str | None, new_since: str | None,
              limit: int, as_json: bool) -> None:
    """Count items (live, removed, changed or new since a version) and list some of them."""
    r = reg.items(status=status, changed_since=changed_since, new_since=new_since, limit=limit)
    _emit(as_json, r.to_dict(), lambda: fmt.items(r))


@cli.command()
@click.option("--levels", "-l", type=int, default=None,
              help="Number of levels (code positions before the disambiguation number) "
                   f"[default: {defaults.LEVELS}, or one per --codebook-size].")
@click.option("--codebook-size", "-k", type=SizesType(), default=None,
              help="Codes per level: one size, or one per level as 256,64,16 "
                   f"[default: {defaults.CODEBOOK_SIZE}].")
@click.option("--name", default=None, help="A unique name for the new version.")
@click.option("--seed", type=int, default=defaults.SEED, show_default=True,
              help="Random seed: same seed and items give the same codes.")
@click.option("--residual", type=click.Choice(["plain", "normalized"]), default=None,
              help="plain: x - centroid (decodable); normalized: rescaled to unit length "
                   f"at every level [default: {defaults.RESIDUAL}; with --from, the parent's].")
@click.option("--niter", type=int, default=None,
              help=f"k-means rounds per level [default: {defaults.NITER}; "
                   f"{defaults.WARM_NITER} with --from].")
@click.option("--refine", type=int, default=None,
              help="Passes that refine levels 2..L together after the greedy levels (plain "
                   f"residuals; 0 turns it off) [default: {defaults.REFINE}].")
@click.option("--beam", type=int, default=None,
              help="Code paths kept while encoding levels 2..L (plain residuals; 1 is "
                   "greedy). Level 1 is always the nearest centroid [default: "
                   f"{defaults.BEAM}; with --from, the parent's].")
@click.option("--max-points-per-centroid", type=int, default=defaults.MAX_POINTS_PER_CENTROID,
              show_default=True,
              help="k-means trains on at most this many points per code (a sample).")
@click.option("--from", "from_version", default=None, metavar="VERSION",
              help="Start from VERSION's codebooks and keep its items' IDs wherever the data "
                   "allows (stable retraining).")
@click.option("--stickiness", type=float, default=None,
              help="With --from: an item keeps its code while that centroid is within this "
                   "share of the nearest one's squared distance [default: "
                   f"{defaults.STICKINESS}].")
@click.option("--collisions", type=click.Choice(["nearest-free", "suffix"]), default=None,
              help="Items on a taken code tuple: move to the nearest free code under the same "
                   "prefix (nearest-free), or only number them (suffix) "
                   f"[default: {defaults.COLLISIONS}; with --from, the parent's].")
@click.option("--balance", type=float, default=None, metavar="SLACK",
              help="Balanced codebooks: no code takes more than (1 + SLACK) times its even "
                   "share of the items (e.g. 0.25).")
@click.option("--max-disambiguation", type=int, default=None, metavar="D",
              help="The largest disambiguation number the version may ever issue: its token "
                   "vocabulary ends with <x_D>, and an item whose ID would need more gets none "
                   "[default: the last level's size - 1, or 2L + 1 for L the largest training "
                   "gives, if more].")
@click.option("--allocation-block", type=int, default=None, metavar="N",
              help="New items get their IDs N consecutive item ids at a time, in id order, "
                   "so that one assigner's IDs never depend on its --batch-size; smaller "
                   "blocks spread a small backlog over more assign workers "
                   f"[default: {defaults.ALLOCATION_BLOCK}].")
@click.option("--reason", default=None, help="Why, for the event log.")
@_json_option
@pass_registry
def train(reg: Registry, as_json: bool, **request) -> None:
    """Train a new draft version on every live item and give each of them an ID in it."""
    r = reg.train(**request)
    _emit(as_json, r.to_dict(), lambda: fmt.train(r))


@cli.command()
@click.argument("version")
@click.option("--reason", default=None, help="Why, for the event log.")
@_json_option
@pass_registry
def freeze(reg: Registry, version: str, reason: str | None, as_json: bool) -> None:
    """Publish a draft VERSION: its codebooks and issued IDs never change again."""
    r = reg.freeze(version, reason=reason)
    _emit(as_json, r.to_dict(), lambda: fmt.change(r))


@cli.command()
@click.argument("version")
@click.option("--alias", default=defaults.ALIAS, show_default=True,
              help="The alias to move (consumers read `active`).")
@click.option("--reason", default=None, help="Why, for the event log.")
@_json_option
@pass_registry
def activate(reg: Registry, version: str, alias: str, reason: str | None,
             as_json: bool) -> None:
    """Point the `active` alias (or --alias) at a frozen VERSION."""
    r = reg.activate(version, alias=alias, reason=reason)
    _emit(as_json, r.to_dict(), lambda: fmt.change(r))


@cli.command()
@click.argument("version")
@click.option("--reason", default=None, help="Why, for the event log.")
@_json_option
@pass_registry
def retire(reg: Registry, version: str, reason: str | None, as_json: bool) -> None:
    """Retire VERSION: it stays readable but gets no new IDs and cannot be activated."""
    r = reg.retire(version, reason=reason)
    _emit(as_json, r.to_dict(), lambda: fmt.change(r))


@cli.command()
@click.argument("version")
@click.option("--reason", default=None, help="Why, for the event log.")
@_json_option
@pass_registry
def delete(reg: Registry, version: str, reason: str | None, as_json: bool) -> None:
    """Delete a draft VERSION made by mistake, with its codebooks and IDs (never published).
    Frozen and retired versions are never deleted; the history keeps the draft's events."""
    r = reg.delete(version, reason=reason)
    _emit(as_json, r.to_dict(), lambda: fmt.change(r))


@cli.command()
@click.option("--to", "to", default=None, metavar="VERSION",
              help="Roll back to this version instead of the previously active one.")
@click.option("--alias", default=defaults.ALIAS, show_default=True, help="The alias to move back.")
@click.option("--reason", default=None, help="Why, for the event log.")
@_json_option
@pass_registry
def rollback(reg: Registry, to: str | None, alias: str, reason: str | None,
             as_json: bool) -> None:
    """Point `active` back at the version it pointed at before (or --to VERSION) and give
    the items added since that version was trained IDs in it. Nothing is deleted."""
    r = reg.rollback(to, alias=alias, reason=reason)
    _emit(as_json, r.to_dict(), lambda: fmt.rollback(r))
    if r.full:
        raise StateError(f"rolled back, but {r.problem()}")


@cli.command()
@_version_option("Only the events of this version (a deleted draft's by its number).")
@click.option("--limit", "-n", type=int, default=defaults.HISTORY_LIMIT, show_default=True,
              help="Most events to show.")
@_json_option
@pass_registry
def history(reg: Registry, version: str | None, limit: int, as_json: bool) -> None:
    """Show the event log, newest first: train, freeze, activate, assign, retire, rollback,
    delete."""
    events = reg.history(version, limit=limit)
    _emit(as_json, [e.to_dict() for e in events], lambda: fmt.history(events))


@cli.command()
@_version_option()
@click.option("--batch-size", type=int, default=defaults.ASSIGN_BATCH, show_default=True,
              help="Items per transaction (and per claim, with several workers), then on to "
                   "the end of the last one's allocation block "
                   f"({defaults.ALLOCATION_BLOCK} item ids unless the version was trained with "
                   "another --allocation-block): one assigner's IDs never depend on it.")
@click.option("--workers", type=int, default=defaults.WORKERS, show_default=True,
              help="Assigner processes sharing the work: in parallel on PostgreSQL (as are "
                   "assigners started on other hosts), one batch at a time on SQLite.")
@_json_option
@pass_registry
def assign(reg: Registry, version: str | None, batch_size: int, workers: int,
           as_json: bool) -> None:
    """Give every live item that has no ID in the version one, without retraining."""
    r = reg.assign(version, batch_size=batch_size, workers=workers)
    _emit(as_json, r.to_dict(), lambda: fmt.assign(r))
    if r.full:
        raise StateError(r.problem())


@cli.command()
@click.argument("keys", nargs=-1, required=True)
@_version_option()
@_metadata_option
@_json_option
@pass_registry
def get(reg: Registry, keys: tuple[str, ...], version: str | None, metadata: bool,
        as_json: bool) -> None:
    """Print the ID of each KEY. Keys without one are named on standard error, after the
    others are printed, and the exit status is then 1."""
    r = reg.get(keys, version, metadata=metadata)
    if as_json or r.records:
        _emit(as_json, r.to_dict(), lambda: fmt.get(r))
    if not r.complete:
        raise NotFoundError("keys", None, message=r.problem())


@cli.command()
@click.argument("query", metavar="ID_OR_PREFIX")
@_version_option()
@click.option("--limit", "-n", type=int, default=None,
              help=f"Most items to list for a prefix [default: {defaults.LOOKUP_LIMIT}].")
@_metadata_option
@_json_option
@pass_registry
def lookup(reg: Registry, query: str, version: str | None, limit: int | None, metadata: bool,
           as_json: bool) -> None:
    """Find the item with a full ID (12-4-9-0), or the items under a prefix (12, 12-4)."""
    r = reg.lookup(query, version, limit=limit, metadata=metadata, count=True)
    _emit(as_json, r.to_dict(), lambda: fmt.lookup(r))


@cli.command()
@click.argument("ids", nargs=-1)
@click.option("--file", "ids_file", default=None, metavar="PATH",
              type=click.Path(dir_okay=False, path_type=str, allow_dash=True),
              help="Read the IDs from PATH, one per line ('-': standard input).")
@_version_option()
@click.option("--nearest", type=int, default=0, metavar="K",
              help="For a well-formed ID no item holds, also the K issued IDs nearest to it.")
@_metadata_option
@_json_option
@pass_registry
def resolve(reg: Registry, ids: tuple[str, ...], ids_file: str | None, version: str | None,
            nearest: int, metadata: bool, as_json: bool) -> None:
    """Map IDs back to items: canonical (12-4-9-0), token form (<a_12><b_4><c_9><d_0>,
    tokens apart or not) or prefixes of either, from IDS, --file PATH, or standard input
    ('-' as the only ID, or --file -). One row per input, in order: input, status (found,
    removed, prefix, unknown, malformed), key, ID, and the number of items under a prefix.
    A bad row never stops the batch."""
    if ids == ("-",) and ids_file is None:
        ids, ids_file = (), "-"
    wanted = list(ids)
    if ids_file is not None:
        lines = _lines(ids_file)
        if not lines:
            raise InputError("no IDs in it", source="standard input" if ids_file == "-"
                             else ids_file)
        wanted += lines
    if not wanted:
        raise InputError("give IDs as arguments, or a file of them (--file PATH, or - for "
                         "standard input)", param="ids")
    r = reg.resolve(wanted, version, nearest=nearest, metadata=metadata)
    for row in r.rows():
        if as_json:
            click.echo(json.dumps(row, default=str))
        else:
            click.echo(fmt.resolved(row))


def _lines(path: str) -> list[str]:
    """The lines of a file, or of standard input for '-': one input each."""
    try:
        if path == "-":
            return sys.stdin.read().splitlines()
        with open(path, encoding="utf-8-sig") as f:  # a byte-order mark is no input's
            return f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        why = getattr(e, "strerror", None) or "not UTF-8 text"
        raise InputError(f"cannot read: {why}", source=path) from None


@cli.command()
@click.argument("version", required=False)
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="Where to write: .parquet, .csv(.gz) or .jsonl(.gz).")
@click.option("--style", type=click.Choice(["ids", "tokens"]), default="ids", show_default=True,
              help="ids: 12-4-9-0; tokens: <a_12><b_4><c_9><d_0> for language-model training.")
@click.option("--vocab", default=None, type=click.Path(dir_okay=False, path_type=str),
              help="Also write every token the version can emit, one per line.")
@_json_option
@pass_registry
def export(reg: Registry, version: str | None, output: str, style: str, vocab: str | None,
           as_json: bool) -> None:
    """Write every item's key, ID and codes in VERSION (default: the active one): what
    downstream training jobs consume."""
    r = reg.export(version, output, style=style, vocab=vocab)
    _emit(as_json, r.to_dict(), lambda: (
        f"wrote {r.rows} IDs of version {r.version} to {r.path}"
        + (f" and {r.tokens} tokens to {r.vocab}" if r.vocab else "")))


@cli.command()
@click.argument("v1")
@click.argument("v2")
@click.option("--remap", default=None, type=click.Path(dir_okay=False, path_type=str),
              help="Write key, old ID, new ID for every item (.parquet, .csv or .jsonl).")
@click.option("--html", "html", default=None, type=click.Path(dir_okay=False, path_type=str),
              help="Also write a self-contained HTML report with charts.")
@_json_option
@pass_registry
def diff(reg: Registry, v1: str, v2: str, remap: str | None, html: str | None,
         as_json: bool) -> None:
    """Compare two versions: churn at each depth for the items in both, items only in one,
    centroid movement. Labels are aligned first when V2 was not trained from V1."""
    r = reg.diff(v1, v2, remap=remap)
    if html:
        from .report import diff_html

        _write_html(html, diff_html(r))
    _emit(as_json, r.to_dict(), lambda: fmt.diff(r))


@cli.command()
@click.argument("version", required=False)
@click.argument("against", required=False)
@click.option("--html", "html", default=None, type=click.Path(dir_okay=False, path_type=str),
              help="Also write a self-contained HTML report with charts.")
@_json_option
@pass_registry
def drift(reg: Registry, version: str | None, against: str | None, html: str | None,
          as_json: bool) -> None:
    """How far the items assigned into VERSION since training have moved from those it was
    trained on (or AGAINST's training items from VERSION's), and whether to retrain."""
    r = reg.drift(version, against)
    if html:
        from .report import drift_html

        _write_html(html, drift_html(r))
    _emit(as_json, r.to_dict(), lambda: fmt.drift(r))


@cli.command()
@click.argument("version", required=False)
@click.option("--sample", type=int, default=defaults.STATS_SAMPLE, show_default=True,
              help="Items whose 10 nearest neighbours measure neighbourhood agreement.")
@_json_option
@pass_registry
def stats(reg: Registry, version: str | None, sample: int, as_json: bool) -> None:
    """Quality of VERSION's IDs (default: the active one): collisions, semantic-unique share,
    buckets, code usage per level, reconstruction error, neighbourhood agreement."""
    r = reg.stats(version, sample=sample)
    _emit(as_json, r.to_dict(), lambda: fmt.stats(r))


@cli.command()
@_json_option
@pass_registry
def verify(reg: Registry, as_json: bool) -> None:
    """Check every invariant: codebook checksums, code ranges, unique IDs, one ID per item,
    frozen versions unchanged since freezing, aliases, schema. Exits 1 on any violation."""
    r = reg.verify()
    _emit(as_json, r.to_dict(), lambda: fmt.verify(r))
    if not r.ok:
        sys.exit(1)


@cli.group()
def token() -> None:
    """API tokens for `registry serve`: create (shown once), list, revoke."""


@token.command(name="create")
@click.argument("name")
@click.option("--scope", type=click.Choice(["read", "write", "admin"]), default="read",
              show_default=True, help="What the token may do: read < write < admin.")
@_json_option
@pass_registry
def token_create(reg: Registry, name: str, scope: str, as_json: bool) -> None:
    """Create token NAME and print its secret, once: only a digest of it is kept."""
    made, secret = reg.create_token(name, scope)
    if as_json:
        _emit(True, {**made.to_dict(), "token": secret}, str)
        return
    click.echo(secret)  # alone on standard output: TOKEN=$(registry token create NAME)
    click.echo(f"token {made.name!r}, scope {made.scope}: shown once, keep it now", err=True)


@token.command(name="list")
@_json_option
@pass_registry
def token_list(reg: Registry, as_json: bool) -> None:
    """List the tokens: name, scope, created, revoked (never their secrets)."""
    rows = reg.tokens()
    _emit(as_json, [t.to_dict() for t in rows], lambda: fmt.table(
        ["name", "scope", "created", "revoked"],
        [[t.name, t.scope, t.created_at.strftime("%Y-%m-%d %H:%M"),
          "-" if t.revoked_at is None else t.revoked_at.strftime("%Y-%m-%d %H:%M")]
         for t in rows]) if rows else "no tokens yet: run `registry token create NAME`")


@token.command(name="revoke")
@click.argument("name")
@_json_option
@pass_registry
def token_revoke(reg: Registry, name: str, as_json: bool) -> None:
    """Revoke token NAME: a running server stops taking it within seconds."""
    t, changed = reg.revoke_token(name)
    _emit(as_json, {**t.to_dict(), "changed": changed}, lambda: (
        f"revoked token {t.name!r}" if changed else f"token {t.name!r} was revoked already"))


@cli.command()
@click.option("--host", default=defaults.SERVE_HOST, show_default=True,
              help="Address to listen on; 0.0.0.0 for every interface.")
@click.option("--port", type=int, default=defaults.SERVE_PORT, show_default=True,
              help="Port to listen on.")
@click.option("--workers", type=int, default=defaults.SERVE_WORKERS, show_default=True,
              help="Processes sharing the port, each holding its own copy of the IDs.")
@click.option("--no-tokens", "no_tokens", is_flag=True,
              help="Answer without API tokens (everyone is admin): loopback addresses only.")
@click.option("--max-body", type=int, default=defaults.SERVE_MAX_BODY, show_default=True,
              help="Largest request body, in bytes.")
@click.option("--max-ids", type=int, default=defaults.SERVE_MAX_IDS, show_default=True,
              help="Most inputs in one POST /v1/resolve.")
@click.option("--max-items", type=int, default=defaults.SERVE_MAX_ITEMS, show_default=True,
              help="Most items in one POST /v1/items.")
@click.option("--max-page", type=int, default=defaults.SERVE_MAX_PAGE, show_default=True,
              help="Largest `limit` of GET /v1/prefixes/{prefix}.")
@click.option("--poll", type=float, default=None,
              help="Seconds between looks at the database for alias moves, revoked tokens "
                   "and new IDs [default: 0.5].")
@pass_registry
def serve(reg: Registry, host: str, port: int, workers: int, no_tokens: bool, max_body: int,
          max_ids: int, max_items: int, max_page: int, poll: float | None) -> None:
    """Serve the registry over HTTP: JSON under /v1, docs at /docs, health at /healthz and
    /readyz, Prometheus at /metrics. Every request but health needs a token (see `registry
    token create`)."""
    try:
        from . import service
    except ImportError as e:
        raise InputError(f"needs the serve extra ({e.name} is missing): "
                         f"{extra_hint('serve')}") from None
    live = [t for t in reg.tokens() if t.revoked_at is None]  # the database answers, too
    if not live and not no_tokens:
        click.echo("no live API token yet: every request but health will get 401 until you "
                   "run `registry token create NAME --scope read`", err=True)
    service.run(reg.url, host=host, port=port, workers=workers, auth=not no_tokens,
                limits=service.Limits(max_body, max_ids, max_items, max_page), poll=poll)


@cli.command(name="versions")
@_json_option
@pass_registry
def versions_cmd(reg: Registry, as_json: bool) -> None:
    """List every version: number, name, state, aliases, parameters and item count."""
    rows = reg.versions()
    _emit(as_json, [s.to_dict() for s in rows], lambda: fmt.versions(rows))


@cli.command()
@click.option("--dir", "workdir", default=None, type=click.Path(file_okay=False, path_type=str),
              help="Folder for the demo's files and database (default: a new temporary one).")
@click.option("--items", type=int, default=None,
              help="Use only the first N packages of the catalog [default: all 3000].")
@_json_option
def demo(workdir: str | None, items: int | None, as_json: bool) -> None:
    """Run the whole flow on a sample of real Debian packages in a scratch SQLite file, and
    show what the IDs mean. Ignores --db: it never touches your registry."""
    from .demo import run

    with _progress(not as_json, "embedding") as bar:
        r = run(workdir, items=items, progress=bar)
    if as_json:
        _emit(True, r.to_dict(), str)
        return
    click.echo(f"demo folder {r.workdir}, database {r.database}")
    for name, command, result in r.steps:
        click.echo(f"\n$ {command}")
        click.echo(fmt.BY_STEP[name](result))
    click.echo(f"\nwhat the level-1 codes mean ({r.purity:.1%} of packages share the main "
               "section of their level-1 code; sections were not used to make the IDs):")
    for m in r.meanings:
        sections = ", ".join(f"{t} {c}" for t, c in m.sections)
        click.echo(f"  {m.code:>3}: {m.items} packages ({sections})")
        for example in m.examples:
            click.echo(f"       {example}")
    click.echo(f"\ntry: registry --db {r.database} lookup {r.meanings[0].code} --limit 10")


def _write_html(path: str, page: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(page)
    except OSError as e:
        raise InputError(f"cannot write: {e.strerror}", source=path) from None



def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point."""
    cli.main(args=list(argv) if argv is not None else sys.argv[1:], prog_name="registry")


if __name__ == "__main__":
    main()
