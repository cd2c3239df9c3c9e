"""Semantic IDs: code tuples, their packed integer form, text IDs and prefixes.

A version with codebook sizes k_1..k_L gives each item codes c_1..c_L and a disambiguation
number d. The text form joins them with ``-`` (``12-4-9-0``); a prefix is any leading part
(``12``, ``12-4``). In the database the codes are one mixed-radix integer
``((c_1 * k_2 + c_2) * k_3 + c_3) ...`` so that every prefix is one contiguous range of it:
a prefix lookup is an index range scan on SQLite and PostgreSQL alike.

Pure Python; the vectorised helpers import numpy when called, so that read-only commands
(``get``, ``lookup``) start without it. No database, no faiss.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:
    import numpy as np

MAX_LEVELS = 8
MAX_CODEBOOK_SIZE = 65536
# Packed codes live in a signed 64-bit column; keep a bit of headroom.
MAX_CODE_SPACE = 2**62
MAX_DISAMBIGUATION = 2**31 - 1
# the most a version's limit may be (the largest disambiguation number it may issue): one
# token each in its vocabulary
MAX_DISAMBIGUATION_LIMIT = 65535

_ID_TEXT = re.compile(r"[0-9]{1,10}(?:-[0-9]{1,10})*")


def check_sizes(sizes: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """Validate codebook sizes per level and return them as a tuple of ints."""
    sizes = tuple(int(k) for k in sizes)
    if not 1 <= len(sizes) <= MAX_LEVELS:
        raise InputError(f"levels must be between 1 and {MAX_LEVELS}, got {len(sizes)}",
                         param="levels")
    for k in sizes:
        if not 2 <= k <= MAX_CODEBOOK_SIZE:
            raise InputError(f"codebook size must be between 2 and {MAX_CODEBOOK_SIZE}, got {k}",
                             param="codebook_size")
    if math.prod(sizes) > MAX_CODE_SPACE:
        raise InputError(f"codebook sizes {list(sizes)} give more than 2^62 code tuples; "
                         "use fewer levels or smaller codebooks", param="codebook_size")
    return sizes


@dataclass(frozen=True)
class CodeSpace:
    """The code tuples of one version: L levels with k_i codes each."""

    sizes: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "sizes", check_sizes(self.sizes))

    @property
    def levels(self) -> int:
        return len(self.sizes)

    def pack_one(self, codes: tuple[int, ...] | list[int]) -> int:
        """One full code tuple -> its packed integer."""
        return self.prefix_range(tuple(codes))[0]

    @cached_property
    def _strides(self) -> tuple[tuple[int, int], ...]:
        """(place value, size) of each level's code in a packed integer."""
        place, out = 1, []
        for k in reversed(self.sizes):
            out.append((place, k))
            place *= k
        return tuple(reversed(out))

    def id_parts(self, rows: Iterable[tuple[int, int]]) -> list[tuple[str, list[int]]]:
        """(canonical ID text, code list) of each (packed code, disambiguation number): the
        records of a lookup, built in one loop (with calls per row, building them took much
        of the time their SQL did: BENCHMARKS.md, Design figures: ID records in one loop)."""
        strides, names = self._strides, self._names
        out = []
        for packed, disamb in rows:
            codes = [packed // place % k for place, k in strides]
            out.append(("-".join([names[c] for c in codes]) + "-" + str(disamb), codes))
        return out

    @cached_property
    def _names(self) -> list[str]:
        """The text of every code number, made once: a lookup formats a hundred IDs."""
        return [str(c) for c in range(max(self.sizes))]

    def pack(self, codes: np.ndarray) -> np.ndarray:
        """(N, L) integer codes -> (N,) int64 packed codes."""
        import numpy as np

        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[1] != self.levels:
            raise ValueError(f"codes must have shape (N, {self.levels}), got {codes.shape}")
        # weight of level i = product of the sizes of the levels below it
        weights = [math.prod(self.sizes[i + 1:]) for i in range(self.levels)]
        return codes @ np.asarray(weights, dtype=np.int64)

    def unpack(self, packed: np.ndarray) -> np.ndarray:
        """(N,) packed codes -> (N, L) int64 codes."""
        import numpy as np

        rest = np.asarray(packed, dtype=np.int64).copy()
        out = np.empty((rest.shape[0], self.levels), dtype=np.int64)
        for i in range(self.levels - 1, -1, -1):
            out[:, i] = rest % self.sizes[i]
            rest //= self.sizes[i]
        return out

    def prefix_spans(self, codes: np.ndarray, depth: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised :meth:`prefix_range`: the first and last packed code under each row's
        first ``depth`` codes (the rest of the row is ignored)."""
        import numpy as np

        codes = np.asarray(codes, dtype=np.int64)
        depth = np.asarray(depth, dtype=np.int64)
        span = np.array([math.prod(self.sizes[d:]) for d in range(self.levels + 1)],
                        dtype=np.int64)  # tuples under a prefix of each depth
        kept = np.arange(self.levels)[None, :] < depth[:, None]
        first = self.pack(np.where(kept, codes, 0))
        return first, first + span[depth] - 1

    def check_prefix(self, prefix: tuple[int, ...] | list[int], extra: int = 0) -> None:
        """Raise ValueError unless ``prefix`` holds at most levels + ``extra`` codes, each in
        its level's range (the ``extra`` ones unchecked)."""
        if len(prefix) > self.levels + extra:
            raise ValueError(f"a prefix of at most {self.levels + extra} codes, got "
                             f"{len(prefix)}")
        for level, (c, k) in enumerate(zip(prefix, self.sizes, strict=False), start=1):
            if not 0 <= c < k:
                raise ValueError(f"code {c} at level {level} is out of range 0..{k - 1}")

    def prefix_range(self, prefix: tuple[int, ...]) -> tuple[int, int]:
        """Inclusive range of packed codes whose leading codes equal ``prefix``."""
        depth = len(prefix)
        if depth > self.levels:
            raise ValueError("prefix longer than the code tuple")
        lo = 0
        for c, k in zip(prefix, self.sizes, strict=False):
            lo = lo * k + c
        span = math.prod(self.sizes[depth:])
        lo *= span
        return lo, lo + span - 1


@dataclass(frozen=True)
class ParsedId:
    """A text ID or prefix: leading codes and, for a full ID, the disambiguation number."""

    codes: tuple[int, ...]
    disambiguation: int | None

    @property
    def is_full(self) -> bool:
        return self.disambiguation is not None


def parse_id(text: str, space: CodeSpace) -> ParsedId:
    """Parse ``12-4-9-0`` (full ID), ``12-4-9`` (all IDs with those codes) or ``12-4`` (prefix)."""
    shown = text if len(text) <= 40 else text[:40] + "..."
    stripped = text.strip()
    if stripped[:1] == "<":  # token form: <a_12><b_4><c_9><d_0>, tokens apart or not
        tokens = _TOKEN.findall(stripped)
        if not _TOKEN_ROW.fullmatch(stripped) or \
                [letter for letter, _ in tokens] != list(_LETTERS[:len(tokens)]):
            raise InputError(f"malformed ID or prefix {shown!r}: expected tokens "
                             f"{''.join(f'<{_LETTERS[i]}_0>' for i in range(space.levels + 1))}"
                             " or a leading part of them")
        stripped = "-".join(number for _, number in tokens)
    if not _ID_TEXT.fullmatch(stripped):
        raise InputError(f"malformed ID or prefix {shown!r}: expected numbers joined by '-', "
                         f"such as 12-4 or {'-'.join(['0'] * (space.levels + 1))}")
    numbers = [int(p) for p in stripped.split("-")]
    if len(numbers) > space.levels + 1:
        raise InputError(f"malformed ID {shown!r}: this version has {space.levels} levels, "
                         f"so an ID has at most {space.levels + 1} numbers")
    codes = tuple(numbers[: space.levels])
    for level, (c, k) in enumerate(zip(codes, space.sizes, strict=False), start=1):
        if c >= k:
            raise InputError(f"code {c} at level {level} of {shown!r} is out of range: "
                             f"level {level} has {k} codes (0..{k - 1})")
    disamb = numbers[space.levels] if len(numbers) == space.levels + 1 else None
    if disamb is not None and disamb > MAX_DISAMBIGUATION:
        raise InputError(f"disambiguation number in {shown!r} is out of range")
    return ParsedId(codes, disamb)


def format_id(codes: tuple[int, ...] | list[int] | np.ndarray, disambiguation: int) -> str:
    """Canonical text form: codes then the disambiguation number, joined by ``-``."""
    return f"{'-'.join(map(str, map(int, codes)))}-{int(disambiguation)}"


def format_ids(codes: np.ndarray, disambiguation: np.ndarray) -> list[str]:
    """Vectorised :func:`format_id` for (N, L) codes and (N,) disambiguation numbers."""
    import numpy as np

    full = np.column_stack([np.asarray(codes, dtype=np.int64),
                            np.asarray(disambiguation, dtype=np.int64)])
    return ["-".join(map(str, row)) for row in full.tolist()]


def disambiguate(packed: np.ndarray, first_free: np.ndarray | None = None) -> np.ndarray:
    """Disambiguation numbers for packed codes, in row order within each code tuple.

    Rows sharing a code tuple get ``first_free, first_free + 1, ...`` in the order they come;
    ``first_free`` (one value per row, equal for equal codes) defaults to 0, as in a fresh
    version. Incremental assignment passes one more than the largest number already issued.
    """
    import numpy as np

    packed = np.asarray(packed, dtype=np.int64)
    n = packed.shape[0]
    order = np.argsort(packed, kind="stable")
    ranked = packed[order]
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = ranked[1:] != ranked[:-1]
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    out = np.empty(n, dtype=np.int64)
    out[order] = np.arange(n) - group_start
    if first_free is not None:
        out += np.asarray(first_free, dtype=np.int64)
    return out


# token letters: one per level, the disambiguation number taking the next one
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def format_tokens(codes: np.ndarray, disambiguation: np.ndarray) -> list[str]:
    """Language-model token form, one token per position: ``<a_12><b_4><c_9><d_0>``."""
    import numpy as np

    full = np.column_stack([np.asarray(codes, dtype=np.int64),
                            np.asarray(disambiguation, dtype=np.int64)])
    letters = _LETTERS[: full.shape[1]]
    return ["".join(f"<{a}_{c}>" for a, c in zip(letters, row, strict=True))
            for row in full.tolist()]


def default_max_disambiguation(sizes: tuple[int, ...], largest: int) -> int:
    """The largest disambiguation number a version may issue unless told otherwise: as many
    disambiguation tokens as its last level has codes, or twice as many as its training used
    (0..``largest``) where that is more."""
    return max(sizes[-1] - 1, 2 * largest + 1)


def vocabulary(sizes: tuple[int, ...], max_disambiguation: int) -> list[str]:
    """Every token a version can emit, in this order: level 1's codes ``<a_0>`` ..
    ``<a_{k1-1}>``, then each further level's, then the disambiguation numbers 0 ..
    ``max_disambiguation`` (a version's limit, fixed when it is trained)."""
    out = [f"<{_LETTERS[i]}_{c}>" for i, k in enumerate(sizes) for c in range(k)]
    out += [f"<{_LETTERS[len(sizes)]}_{d}>" for d in range(max_disambiguation + 1)]
    return out


def disambiguate_keeping(packed: np.ndarray, old_packed: np.ndarray,
                         old_disamb: np.ndarray) -> np.ndarray:
    """Disambiguation numbers for a version trained from an earlier one: a row whose code
    tuple is unchanged (``old_packed``; -1 where it had none) keeps its earlier number, and
    the other rows of each tuple count on after the largest number kept there."""
    import numpy as np

    packed = np.asarray(packed, dtype=np.int64)
    old_disamb = np.asarray(old_disamb, dtype=np.int64)
    kept = (packed == np.asarray(old_packed, dtype=np.int64)) & (old_disamb >= 0)
    _, inverse = np.unique(packed, return_inverse=True)
    largest = np.full(inverse.max() + 1 if len(inverse) else 0, -1, dtype=np.int64)
    np.maximum.at(largest, inverse[kept], old_disamb[kept])
    out = np.empty(packed.shape[0], dtype=np.int64)
    out[kept] = old_disamb[kept]
    rest = ~kept
    out[rest] = disambiguate(packed[rest], largest[inverse[rest]] + 1)
    return out


@dataclass
class ParsedMany:
    """Many IDs or prefixes parsed at once (:func:`parse_many`), one row per input: its
    ``codes`` (-1 past the codes it gives), its disambiguation number (-1 for a prefix), how
    many codes it gives (``depth``), and whether it is well formed for the code space
    (``ok``: numbers in range, at most one more than the levels)."""

    codes: np.ndarray
    disamb: np.ndarray
    depth: np.ndarray
    ok: np.ndarray

    @property
    def full(self) -> np.ndarray:
        """Rows that name one ID (codes and a disambiguation number)."""
        return self.ok & (self.disamb >= 0)


# one ID in token form, tokens possibly apart (tokenizers decode added tokens so)
_TOKEN_ROWS = re.compile(rb"(?:[ \t]*(?:<[a-z]_[0-9]{1,10}>[ \t]*)+\n)*")
_TOKEN_ROW = re.compile(r"[ \t]*(?:<[a-z]_[0-9]{1,10}>[ \t]*)+")
_TOKEN = re.compile(r"<([a-z])_([0-9]{1,10})>")


def parse_many(texts: Iterable[str], space: CodeSpace) -> ParsedMany:
    """:func:`parse_id` for many inputs at once, canonical (``12-4-9-0``) or in token form
    (``<a_12><b_4><c_9><d_0>``, tokens possibly apart), full IDs and prefixes alike; a row
    that is neither is marked not ``ok`` instead of raising. Inputs that all have one shape
    (the same number of codes, one form) are parsed by the C of ``bytes`` and numpy's text
    reader; mixed ones by numpy over the bytes of all inputs joined. No Python work per input
    beyond a join, a strip where there is white space, and a check."""
    import numpy as np

    rows = texts if isinstance(texts, list) else list(texts)
    n, width = len(rows), space.levels + 1
    joined = "\n".join(rows)
    if (n and joined.count("\n") != n - 1) or not joined.isascii() or \
            any(c in joined for c in " \t\r\x0b\x0c\x1c\x1d\x1e\x1f"):
        rows = [t.strip() for t in rows]  # as parse_id does (Unicode white space too)
        rows = ["x" if "\n" in t else t for t in rows]  # one input per line: malformed
        joined = "\n".join(rows)
    values = _uniform(joined, n, width)
    if values is not None:
        count = np.full(n, values.shape[1], dtype=np.int64)
        bad = np.zeros(n, dtype=bool)
        values = np.pad(values, ((0, 0), (0, width - values.shape[1])), constant_values=-1)
    else:
        values, count, bad = _mixed(rows, joined, n, width)
    depth = np.minimum(count, space.levels)
    ok = ~bad & (count >= 1)
    codes = values[:, : space.levels]
    sizes = np.asarray(space.sizes, dtype=np.int64)
    ok &= ~((codes >= sizes) & (codes >= 0)).any(axis=1)
    disamb = np.where(count == width, values[:, -1], -1)
    ok &= disamb <= MAX_DISAMBIGUATION
    depth[~ok] = 0
    return ParsedMany(np.where(ok[:, None], codes, -1), np.where(ok, disamb, -1), depth, ok)


_DIGITS = b"0123456789"
_LETTERS_B = _LETTERS.encode()
# token form -> numbers apart: '>' ends a number; '<', letters and '_' go
_UNTOKEN = bytes.maketrans(b">", b" ")


def _uniform(joined: str, n: int, width: int) -> np.ndarray | None:
    """(n, k) numbers when every input is well formed with the same k numbers in one form,
    checked and parsed at C speed; else None (the caller's slower path decides)."""
    import numpy as np

    if not n or not joined.isascii():
        return None
    blob = (joined + "\n").encode()
    if blob[:1] == b"<":  # token form: <a_12><b_4>... on every line
        while b"> " in blob or b">\t" in blob:  # white space between tokens only
            blob = blob.replace(b"> ", b">").replace(b">\t", b">")
        k, extra = divmod(blob.count(b"<"), n)
        shape = b"".join(b"<" + _LETTERS_B[i:i + 1] + b"_>" for i in range(k)) + b"\n"
        if extra or not 1 <= k <= width or blob.translate(None, _DIGITS) != shape * n \
                or b"_>" in blob or _digits_astray(blob):
            return None
        numbers = blob.translate(_UNTOKEN, b"<_" + _LETTERS_B)
        separators = n * (k + 1)  # a space after each number, and the line's end
    else:  # the first line says how many numbers; every line must have as many
        k = blob[:blob.index(b"\n")].count(b"-") + 1
        if k > width or blob.translate(None, _DIGITS) != (b"-" * (k - 1) + b"\n") * n:
            return None
        if blob[:1] == b"\n" or b"\n\n" in blob:
            return None  # an empty line, which numpy's reader takes for a 0 when alone
        # (other empty numbers, "1--2", come out as fewer numbers than the lines hold)
        numbers = blob.replace(b"-", b" ")
        separators = n * k  # one after each number
    values = np.fromstring(numbers.decode(), dtype=np.int64, sep=" ")
    if values.size != n * k:  # an empty number somewhere
        return None
    # more than ten digits is malformed, as parse_id has it: that takes leading zeros, seen
    # as more digits in the text than the values have (the scan for them only then)
    digits = len(numbers) - separators
    if digits != int(np.searchsorted(10 ** np.arange(1, 19), values, side="right").sum()) + \
            values.size and _LONG_NUMBER.search(numbers):
        return None
    return values.reshape(n, k)


_LONG_NUMBER = re.compile(rb"[0-9]{11}")


def _digits_astray(blob: bytes) -> bool:
    """Whether a digit of token-form lines stands elsewhere than after a token's '_' (where
    the shape check, which drops every digit, would not see it: <1a_2>)."""
    import numpy as np

    a = np.frombuffer(blob, np.uint8)
    digit = (a >= 48) & (a <= 57)
    # each digit follows '_' or a digit, and is followed by '>' or a digit
    before = np.concatenate(([0], a[:-1]))
    after = np.concatenate((a[1:], [0]))
    ok_before = (before == 95) | ((before >= 48) & (before <= 57))
    ok_after = (after == 62) | ((after >= 48) & (after <= 57))
    return bool((digit & ~(ok_before & ok_after)).any())


def _mixed(rows: list[str], joined: str, n: int, width: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, numbers per input, malformed) of inputs of several shapes or forms."""
    import numpy as np

    canonical = np.ones(n, dtype=bool)
    if "<" in joined:
        canonical = np.fromiter((t[:1] != "<" for t in rows), dtype=bool, count=n)
    values = np.full((n, width), -1, dtype=np.int64)
    count = np.zeros(n, dtype=np.int64)
    bad = np.zeros(n, dtype=bool)
    for which, convert in ((np.flatnonzero(canonical), None),
                           (np.flatnonzero(~canonical), _tokens_to_dashes)):
        if not which.size:
            continue
        text = joined if which.size == n else "\n".join(rows[i] for i in which)
        # any character but ASCII digits, '-' and tokens marks its line malformed; a lone
        # surrogate (from undecodable input) is such a character too
        blob = np.frombuffer((text + "\n").encode("utf-8", "surrogatepass"), np.uint8)
        part_bad = np.zeros(which.size, dtype=bool)
        if convert is not None:
            blob = convert(blob, [rows[i] for i in which], part_bad)
        v, c, b = _numbers(blob, which.size, width)
        values[which], count[which], bad[which] = v, c, b | part_bad
    return values, count, bad


def _numbers(a: np.ndarray, n: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From bytes of ``n`` lines of numbers joined by '-': (values (n, width), -1 where
    absent; numbers per line; which lines are malformed: another byte, an empty or
    over-long number, more than ``width`` numbers)."""
    import numpy as np

    nl, dash = a == 10, a == 45
    digit = (a >= 48) & (a <= 57)
    sep = nl | dash
    bad = np.zeros(n, dtype=bool)
    other = np.flatnonzero(~(sep | digit))
    if other.size:
        bad[np.cumsum(nl)[other] - nl[other]] = True
    ends = np.flatnonzero(sep)  # each number ends at its separator
    starts = np.concatenate(([0], ends[:-1] + 1))
    length = ends - starts
    line = np.cumsum(nl[ends]) - nl[ends]
    bad[line[(length == 0) | (length > 10)]] = True
    count = np.bincount(line, minlength=n)
    bad |= count > width
    rank = np.arange(ends.size) - (np.cumsum(count) - count)[line]  # place within its line
    at = np.flatnonzero(digit)
    number = (np.cumsum(sep) - sep)[at]
    # at most ten digits each (longer lines are bad): exact in float64
    pow10 = 10.0 ** np.arange(20)
    weight = pow10[np.minimum(ends[number] - at - 1, pow10.size - 1)]
    value = np.bincount(number, weights=(a[at] - 48) * weight, minlength=ends.size)
    keep = (rank < width) & (length > 0) & (length <= 10)
    out = np.full((n, width), -1, dtype=np.int64)
    out[line[keep], rank[keep]] = value[keep].astype(np.int64)
    return out, count, bad


def _tokens_to_dashes(a: np.ndarray, rows: list[str], bad: np.ndarray) -> np.ndarray:
    """Token-form lines (``<a_12> <b_4>``) as canonical ones (``12-4``), byte for byte;
    marks in ``bad`` the lines that are not tokens of letters a, b, c... in turn."""
    import numpy as np

    blob = a.tobytes()
    if not _TOKEN_ROWS.fullmatch(blob):  # some line is not tokens at all: find which
        for i, t in enumerate(rows):
            if not _TOKEN_ROW.fullmatch(t):
                bad[i] = True
                rows[i] = "<a_0>"
        a = np.frombuffer(("\n".join(rows) + "\n").encode("utf-8", "surrogatepass"), np.uint8)
    nl, opening = a == 10, a == 60
    letter = (a >= 97) & (a <= 122)
    line_of = np.cumsum(nl) - nl
    # the k-th token of a line must carry the k-th letter
    token = np.cumsum(opening)  # tokens opened so far, this one included
    first = np.concatenate(([0], token[np.flatnonzero(nl)][:-1]))
    at = np.flatnonzero(letter)
    wrong = a[at] - 97 != token[at] - 1 - first[line_of[at]]
    bad[line_of[at[wrong]]] = True
    closing = a == 62
    keep = ~(opening | letter | (a == 95) | (a == 32) | (a == 9))
    out = np.where(closing, 45, a)[keep]  # '>' -> '-'
    # a line's last '-' (just before its newline) goes
    last = (out[:-1] == 45) & (out[1:] == 10)
    return out[np.concatenate((~last, [True]))]
