"""Code tuples, packed codes, text IDs, prefixes and disambiguation numbers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from registry import InputError
from registry.ids import CodeSpace, disambiguate, format_id, format_ids, parse_id


def test_pack_is_mixed_radix_and_unpack_inverts_it():
    space = CodeSpace((4, 3, 5))
    codes = np.array(list(itertools.product(range(4), range(3), range(5))))
    packed = space.pack(codes)
    # lexicographic order of the tuples is the order of the packed integers
    np.testing.assert_array_equal(packed, np.arange(4 * 3 * 5))
    np.testing.assert_array_equal(space.unpack(packed), codes)
    assert space.pack_one((2, 1, 4)) == 2 * 15 + 1 * 5 + 4
    assert space.unpack(np.array([34]))[0].tolist() == [2, 0, 4]



def test_id_parts_match_unpack_and_format_of_each_row():
    space = CodeSpace((4, 3, 5))
    rows = [(int(p), d) for p, d in zip(range(60), itertools.cycle([0, 1, 17]))]
    parts = space.id_parts(rows)
    assert parts == [(format_id(c, d), c.tolist())
                     for c, (_, d) in zip(space.unpack(np.arange(60)), rows, strict=True)]
    assert parts[34] == ("2-0-4-1", [2, 0, 4])
    big = CodeSpace((256,) * 7)
    assert big.id_parts([(256**7 - 1, 3)]) == [("-".join(["255"] * 7) + "-3", [255] * 7)]

def test_prefix_ranges_cover_exactly_the_tuples_under_them():
    space = CodeSpace((4, 3, 5))
    codes = np.array(list(itertools.product(range(4), range(3), range(5))))
    packed = space.pack(codes)
    for prefix in [(), (2,), (2, 1), (3, 2, 4)]:
        lo, hi = space.prefix_range(prefix)
        inside = (packed >= lo) & (packed <= hi)
        expected = np.all(codes[:, : len(prefix)] == np.array(prefix, dtype=int), axis=1)
        np.testing.assert_array_equal(inside, expected)


def test_large_code_spaces_fit_in_64_bits():
    space = CodeSpace((256,) * 7)
    top = space.pack(np.full((1, 7), 255))[0]
    assert top == 256**7 - 1
    assert space.unpack(np.array([top]))[0].tolist() == [255] * 7


def test_parse_full_ids_and_prefixes():
    space = CodeSpace((256, 256, 256))
    assert parse_id("12-4-9-0", space).codes == (12, 4, 9)
    assert parse_id("12-4-9-0", space).disambiguation == 0
    assert parse_id(" 12-4 ", space).codes == (12, 4)
    assert not parse_id("12-4-9", space).is_full
    assert parse_id("7", space).codes == (7,)


@pytest.mark.parametrize("text, message", [
    ("", "malformed"),
    ("12-", "malformed"),
    ("-1", "malformed"),
    ("12--4", "malformed"),
    ("a-b", "malformed"),
    ("12;DROP TABLE items", "malformed"),
    ("1-2-3-4-5", "at most 4 numbers"),
    ("256", "code 256 at level 1"),
    ("1-256", "code 256 at level 2"),
    ("1-2-3-99999999999", "malformed"),
    ("1" * 200, "malformed"),
])
def test_malformed_ids(text, message):
    with pytest.raises(InputError, match=message):
        parse_id(text, CodeSpace((256, 256, 256)))


def test_format():
    assert format_id((12, 4, 9), 0) == "12-4-9-0"
    assert format_ids(np.array([[1, 2], [3, 4]]), np.array([0, 7])) == ["1-2-0", "3-4-7"]


def test_disambiguation_counts_within_each_tuple_in_row_order():
    packed = np.array([5, 3, 5, 5, 3, 9])
    np.testing.assert_array_equal(disambiguate(packed), [0, 0, 1, 2, 1, 0])
    # incremental: continue after the numbers already issued for each code
    np.testing.assert_array_equal(disambiguate(packed, np.array([2, 0, 2, 2, 0, 1])),
                                  [2, 0, 3, 4, 1, 1])


def test_disambiguation_keeps_earlier_numbers_of_unchanged_tuples():
    from registry.ids import disambiguate_keeping

    packed = np.array([5, 5, 5, 3, 3, 9])
    old_packed = np.array([5, 5, 7, -1, 3, 9])
    old_disamb = np.array([1, 4, 0, -1, 0, 2])
    # rows 0, 1 keep 1 and 4 under code 5; row 2 moved there and counts on after 4; row 3 is
    # new under code 3, after row 4's kept 0; row 5 keeps 2
    np.testing.assert_array_equal(disambiguate_keeping(packed, old_packed, old_disamb),
                                  [1, 4, 5, 1, 0, 2])
