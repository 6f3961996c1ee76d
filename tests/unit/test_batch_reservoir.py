"""The drift sample's reservoir: the same rows taken by the row and by the chunk, each row alike."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from aimass.batch.job import Reservoir


def taken_by_row(size: int, rows: int, seed: int) -> list[tuple[int, int]]:
    reservoir = Reservoir(size, random.Random(seed))
    return [(row, slot) for row in range(rows) for _, slot in reservoir.take(1)]


@pytest.mark.parametrize(("size", "rows"), [(10, 1000), (100, 50), (1000, 100_000), (0, 10)])
def test_rows_are_taken_alike_by_the_row_and_by_the_chunk(size: int, rows: int) -> None:
    reservoir = Reservoir(size, random.Random(3))
    by_chunk, start = [], 0
    for count in [7, 1, 300, 2000] * 1000:
        count = min(count, rows - start)
        by_chunk += [(start + offset, slot) for offset, slot in reservoir.take(count)]
        start += count
    assert by_chunk == taken_by_row(size, rows, 3)
    assert len({slot for _, slot in by_chunk}) == min(size, rows)


def test_every_row_ends_in_the_sample_with_the_same_chance() -> None:
    ends: Counter[int] = Counter()
    for seed in range(3000):
        sample = [0] * 5
        for row, slot in taken_by_row(5, 40, seed):
            sample[slot] = row
        ends.update(sample)
    # 3000 * 5 / 40 = 375 each; 6 standard deviations either way
    assert all(375 - 6 * 18 < ends[row] < 375 + 6 * 18 for row in range(40)), ends
