"""Reading catalog files: JSONL (optionally gzipped), CSV, Parquet, and .npy with a keys file.

A file gives each item a key and either a text (a column, or a template over columns such as
``"{title}. {description}"``) or a vector; the other columns are kept as metadata. The whole
file is validated before anything is written, and every problem is reported with the file and
the 1-based row it is on (for JSONL and CSV, the line; the CSV header is line 1).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .vectors import check_vectors

MAX_KEY_LENGTH = 1000
# sentence-transformers models read a few hundred tokens; a text this long is a mistake
MAX_TEXT_LENGTH = 100_000
_JSONL = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
_CSV = (".csv", ".csv.gz")
_PARQUET = (".parquet", ".pq")


@dataclass
class Incoming:
    """Validated items of one file or call: keys, and texts or float32 vectors, and metadata.

    Exactly one of ``texts`` and ``vectors`` is set; ``rows`` holds each item's row number.
    """

    source: str
    keys: list[str]
    metas: list[dict | None]
    rows: list[int]
    texts: list[str] | None = None
    vectors: np.ndarray | None = None


@dataclass(frozen=True)
class TextSpec:
    """``text`` of an add: a column name, or a template over columns such as
    ``{title}. {body}``."""

    column: str | None
    template: str | None
    fields: tuple[str, ...]

    @classmethod
    def parse(cls, spec: str) -> TextSpec:
        if "{" not in spec and "}" not in spec:
            if not spec.strip():
                raise InputError("give a column name or a template", param="text")
            return cls(spec, None, (spec,))
        try:
            parts = list(string.Formatter().parse(spec))
        except ValueError as e:
            raise InputError(f"bad template {spec!r}: {e}", param="text") from None
        fields = []
        for _, name, fmt, conv in parts:
            if name is None:
                continue
            if not name or name.isdigit() or fmt or conv:
                raise InputError(f"bad template {spec!r}: fields must be plain column names, "
                                 "as in {title}", param="text")
            fields.append(name)
        if not fields:
            raise InputError(f"template {spec!r} names no column", param="text")
        return cls(None, spec, tuple(dict.fromkeys(fields)))

    def render(self, rec: dict, source: str, row: int) -> str:
        for name in self.fields:
            if name not in rec:
                raise InputError(f"no column {name!r}", source=source, row=row)
        if self.column is not None:
            value = rec[self.column]
            if value is not None and not isinstance(value, (str, int, float)):
                raise InputError(f"text in column {self.column!r} is not a string",
                                 source=source, row=row)
            text = "" if value is None else str(value)
        else:
            text = self.template.format_map(
                {f: "" if rec[f] is None else str(rec[f]) for f in self.fields})
        if not text.strip():
            raise InputError("empty text", source=source, row=row)
        if len(text) > MAX_TEXT_LENGTH:
            raise InputError(f"text is {len(text)} characters long; the limit is "
                             f"{MAX_TEXT_LENGTH}", source=source, row=row)
        if "\x00" in text:
            raise InputError("text contains a NUL character", source=source, row=row)
        return text


def file_format(path: Path) -> str:
    name = path.name.lower()
    for fmt, suffixes in (("jsonl", _JSONL), ("csv", _CSV), ("parquet", _PARQUET),
                          ("npy", (".npy",))):
        if name.endswith(suffixes):
            return fmt
    if name.endswith(".npz"):
        raise InputError("a NumPy .npz archive holds several arrays: save the one matrix with "
                         "numpy.save as .npy, with its keys in a text file (`keys_file`)",
                         source=str(path))
    raise InputError("unknown file type: use .jsonl, .jsonl.gz, .csv, .csv.gz, .parquet or "
                     ".npy", source=str(path))


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError("no such file", source=str(path))
    if not path.is_file():
        raise InputError("not a regular file", source=str(path))


def check_key(value: object, source: str, row: int) -> str:
    """A key as stored: a non-empty string (numbers are accepted and turned into text)."""
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict, float)):
        raise InputError(f"key must be a string or an integer, got {type(value).__name__}",
                         source=source, row=row)
    key = str(value)
    if not key.strip():
        raise InputError("empty key", source=source, row=row)
    if len(key) > MAX_KEY_LENGTH:
        raise InputError(f"key is {len(key)} characters long; the limit is {MAX_KEY_LENGTH}",
                         source=source, row=row)
    if "\x00" in key:
        raise InputError("key contains a NUL character", source=source, row=row)
    return key


def unique_key(seen: dict[str, int], value: object, source: str, row: int) -> str:
    """A checked key that no earlier row of the file had; remembers its row."""
    key = check_key(value, source, row)
    if key in seen:
        raise InputError(f"duplicate key {key!r} (first at row {seen[key]})",
                         source=source, row=row)
    seen[key] = row
    return key


def _text_lines(path: Path) -> list[str]:
    raw = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise InputError(f"not a valid gzip file ({e})", source=str(path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise InputError("not valid UTF-8 text", source=str(path), row=line) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.splitlines()


def parse_vector(value: object, source: str, row: int) -> np.ndarray:
    if isinstance(value, str):
        s = value.strip()
        try:
            value = json.loads(s) if s.startswith("[") else [float(t) for t in s.split()]
        except ValueError:
            raise InputError("vector is not a list of numbers", source=source, row=row) from None
    if not isinstance(value, (list, tuple)) or not value:
        raise InputError("vector must be a non-empty list of numbers", source=source, row=row)
    try:
        with np.errstate(over="ignore"):  # too large for float32: inf, caught with NaN below
            return np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise InputError("vector must be a list of numbers", source=source,
                         row=row) from None


def _collect(source: str, records, key_col: str, *, text: TextSpec | None = None,
             vector_col: str | None = None) -> Incoming:
    """Validate (row number, dict) records into Incoming items."""
    keys: list[str] = []
    texts: list[str] = []
    vectors: list[np.ndarray] = []
    metas: list[dict | None] = []
    rows: list[int] = []
    row_of: dict[str, int] = {}
    used = {key_col, *(text.fields if text else ()), *((vector_col,) if vector_col else ())}
    dim = None
    for row, rec in records:
        if key_col not in rec:
            raise InputError(f"no column {key_col!r}", source=source, row=row)
        key = unique_key(row_of, rec[key_col], source, row)
        if text is not None:
            texts.append(text.render(rec, source, row))
        else:
            if vector_col not in rec:
                raise InputError(f"no column {vector_col!r}", source=source, row=row)
            vec = parse_vector(rec[vector_col], source, row)
            if vec.ndim != 1:
                raise InputError("vector must be a flat list of numbers", source=source, row=row)
            if dim is None:
                dim = len(vec)
            elif len(vec) != dim:
                raise InputError(f"vector has {len(vec)} numbers, earlier rows have {dim}",
                                 source=source, row=row)
            vectors.append(vec)
        keys.append(key)
        rows.append(row)
        meta = {k: v for k, v in rec.items() if k not in used}
        metas.append(meta or None)
    if not keys:
        raise InputError("no rows", source=source)
    if text is not None:
        return Incoming(source, keys, metas, rows, texts=texts)
    arr = np.stack(vectors)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise InputError("vector contains NaN or infinity (or a number too large for float32)",
                         source=source, row=rows[int(np.flatnonzero(bad)[0])])
    return Incoming(source, keys, metas, rows, vectors=arr)


def _jsonl_records(path: Path):
    source = str(path)
    for line_no, line in enumerate(_text_lines(path), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise InputError("not valid JSON", source=source, row=line_no) from None
        if not isinstance(rec, dict):
            raise InputError("each line must be a JSON object", source=source, row=line_no)
        yield line_no, rec


def _csv_records(path: Path):
    source = str(path)
    lines = _text_lines(path)
    try:
        reader = csv.DictReader(io.StringIO("\n".join(lines)), strict=True)
        for rec in reader:
            if None in rec:
                raise InputError("more fields than the header has", source=source,
                                 row=reader.line_num)
            yield reader.line_num, rec
    except csv.Error as e:
        raise InputError(f"malformed CSV ({e})", source=source) from None


def _parquet_records(path: Path, needed: tuple[str, ...]):
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = str(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"not a readable Parquet file ({e})", source=source) from None
    for col in needed:
        if col not in table.column_names:
            raise InputError(f"no column {col!r}", source=source)
    for row, rec in enumerate(table.to_pylist(), start=1):
        yield row, {k: (v if k in needed else jsonable(v)) for k, v in rec.items()}


def jsonable(value: object) -> object:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return str(value)


def _records(path: Path, needed: tuple[str, ...]):
    fmt = file_format(path)
    if fmt == "jsonl":
        return _jsonl_records(path)
    if fmt == "csv":
        return _csv_records(path)
    return _parquet_records(path, needed)


def read_file(path: str | Path, key_col: str = "key", *, text: str | None = None,
              vector: str | None = None) -> Incoming:
    """Items from a JSONL, CSV or Parquet file: a key column and a text spec or a vector
    column (exactly one of them)."""
    path = Path(path)
    _check_file(path)
    if file_format(path) == "npy":
        raise InputError("a .npy matrix needs `keys_file`, a text file of its keys, one per "
                         "line",
                         source=str(path))
    if (text is None) == (vector is None):
        raise InputError("give either `text` (a column or a template over columns) or "
                         "`vector` (a column)",
                         source=str(path))
    spec = TextSpec.parse(text) if text is not None else None
    needed = (key_col, *(spec.fields if spec else (vector,)))
    return _collect(str(path), _records(path, needed), key_col, text=spec, vector_col=vector)


def read_keys(path: str | Path, key_col: str = "key") -> list[str]:
    """Keys from a text file (one per line) or from the key column of a catalog file."""
    path = Path(path)
    _check_file(path)
    seen: dict[str, int] = {}
    name = path.name.lower()
    if name.endswith(_JSONL + _CSV + _PARQUET):
        for row, rec in _records(path, (key_col,)):
            if key_col not in rec:
                raise InputError(f"no column {key_col!r}", source=str(path), row=row)
            unique_key(seen, rec[key_col], str(path), row)
    else:
        for row, line in enumerate(_text_lines(path), start=1):
            if line.strip():
                unique_key(seen, line, str(path), row)
    if not seen:
        raise InputError("no keys", source=str(path))
    return list(seen)


def read_npy(path: str | Path, keys_path: str | Path) -> Incoming:
    """A (N, dim) .npy matrix and a text file with its N keys, one per line."""
    path, keys_path = Path(path), Path(keys_path)
    _check_file(path)
    _check_file(keys_path)
    if file_format(path) != "npy":
        raise InputError("`keys_file` goes with a .npy matrix; a JSONL, CSV or Parquet "
                         "file names its key column with `key`", source=str(path))
    try:
        matrix = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise InputError(f"not a readable .npy array ({e})", source=str(path)) from None
    if not isinstance(matrix, np.ndarray):  # an .npz archive under a .npy name
        raise InputError("not a .npy array but an archive of several: save the one matrix "
                         "with numpy.save", source=str(path))
    vectors = check_vectors(matrix, str(path))
    keys_source = str(keys_path)
    lines = _text_lines(keys_path)
    if len(lines) != vectors.shape[0]:
        raise InputError(f"{len(lines)} keys for {vectors.shape[0]} vectors in {path}",
                         source=keys_source)
    seen: dict[str, int] = {}
    keys = [unique_key(seen, line, keys_source, row) for row, line in enumerate(lines, start=1)]
    return Incoming(str(path), keys, [None] * len(keys), list(range(1, len(keys) + 1)),
                    vectors=vectors)
