"""Reading catalog files: JSONL (optionally gzipped), CSV, Parquet, and .npy with a keys file.

Everything is validated before anything is written, and every problem is reported with the
file and the 1-based row it is on (for JSONL and CSV, the line; the CSV header is line 1).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError

MAX_KEY_LENGTH = 1000
_JSONL = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
_CSV = (".csv", ".csv.gz")
_PARQUET = (".parquet", ".pq")


@dataclass
class VectorRows:
    """Validated rows of one file: keys, one float32 vector each, and other columns as meta."""

    source: str
    keys: list[str]
    vectors: np.ndarray
    metas: list[dict | None]


def file_format(path: Path) -> str:
    name = path.name.lower()
    for fmt, suffixes in (("jsonl", _JSONL), ("csv", _CSV), ("parquet", _PARQUET),
                          ("npy", (".npy",))):
        if name.endswith(suffixes):
            return fmt
    raise InputError("unknown file type: use .jsonl, .jsonl.gz, .csv, .csv.gz, .parquet or "
                     ".npy", source=str(path))


def check_vectors(x: object, source: str) -> np.ndarray:
    """A non-empty 2-d array of finite real numbers, as contiguous float32 (a copy only
    when the input is not that already)."""
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"expected a non-empty 2-d array of vectors, got shape {arr.shape}",
                         source=source)
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.integer)
                                     or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"vectors must be real numbers, got dtype {arr.dtype}", source=source)
    with np.errstate(over="ignore"):  # too large for float32 becomes inf, reported below
        out = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(out).all(axis=1)
    if not finite.all():
        raise InputError("vector contains NaN or infinity (or a number too large for float32)",
                         source=source, row=int(np.flatnonzero(~finite)[0]) + 1)
    return out


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


def _new_key(seen: dict[str, int], value: object, source: str, row: int) -> str:
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


def _vector(value: object, source: str, row: int) -> np.ndarray:
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


def _collect(source: str, records, key_col: str, vector_col: str) -> VectorRows:
    """Validate (row number, dict) records into VectorRows."""
    keys: list[str] = []
    vectors: list[np.ndarray] = []
    metas: list[dict | None] = []
    row_of: dict[str, int] = {}
    dim = None
    for row, rec in records:
        for col in (key_col, vector_col):
            if col not in rec:
                raise InputError(f"no column {col!r}", source=source, row=row)
        key = _new_key(row_of, rec[key_col], source, row)
        vec = _vector(rec[vector_col], source, row)
        if vec.ndim != 1:
            raise InputError("vector must be a flat list of numbers", source=source, row=row)
        if dim is None:
            dim = len(vec)
        elif len(vec) != dim:
            raise InputError(f"vector has {len(vec)} numbers, earlier rows have {dim}",
                             source=source, row=row)
        keys.append(key)
        vectors.append(vec)
        meta = {k: v for k, v in rec.items() if k not in (key_col, vector_col)}
        metas.append(meta or None)
    if not keys:
        raise InputError("no rows", source=source)
    arr = np.stack(vectors)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise InputError("vector contains NaN or infinity (or a number too large for float32)",
                         source=source, row=row_of[keys[int(np.flatnonzero(bad)[0])]])
    return VectorRows(source, keys, arr, metas)


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


def _parquet_records(path: Path, key_col: str, vector_col: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = str(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"not a readable Parquet file ({e})", source=source) from None
    for col in (key_col, vector_col):
        if col not in table.column_names:
            raise InputError(f"no column {col!r}", source=source)
    for row, rec in enumerate(table.to_pylist(), start=1):
        yield row, {k: (v if k in (key_col, vector_col) else _jsonable(v))
                    for k, v in rec.items()}


def _jsonable(value: object) -> object:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def read_vector_file(path: str | Path, key_col: str, vector_col: str) -> VectorRows:
    """Rows with a key column and a vector column from a JSONL, CSV or Parquet file."""
    path = Path(path)
    _check_file(path)
    fmt = file_format(path)
    if fmt == "npy":
        raise InputError("a .npy matrix needs --keys KEYS.txt, one key per line",
                         source=str(path))
    records = {"jsonl": lambda: _jsonl_records(path),
               "csv": lambda: _csv_records(path),
               "parquet": lambda: _parquet_records(path, key_col, vector_col)}[fmt]()
    return _collect(str(path), records, key_col, vector_col)


def read_npy(path: str | Path, keys_path: str | Path) -> VectorRows:
    """A (N, dim) .npy matrix and a text file with its N keys, one per line."""
    path, keys_path = Path(path), Path(keys_path)
    _check_file(path)
    _check_file(keys_path)
    try:
        matrix = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise InputError(f"not a readable .npy array ({e})", source=str(path)) from None
    vectors = check_vectors(matrix, str(path))
    keys_source = str(keys_path)
    lines = _text_lines(keys_path)
    if len(lines) != vectors.shape[0]:
        raise InputError(f"{len(lines)} keys for {vectors.shape[0]} vectors in {path}",
                         source=keys_source)
    seen: dict[str, int] = {}
    keys = [_new_key(seen, line, keys_source, row) for row, line in enumerate(lines, start=1)]
    return VectorRows(str(path), keys, vectors, [None] * len(keys))
