"""Chunks read ahead by a thread of their own: the same chunks in the same order, the reader's error
raised in turn, and a consumer that stops early stops the reader."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing

import pytest

from aimass.batch.formats import Chunk
from aimass.batch.job import read_ahead


def chunks(count: int, fail_at: int | None = None, read: list[int] | None = None) -> Iterator[Chunk]:
    for i in range(count):
        if i == fail_at:
            raise OSError(f"broken at chunk {i}")
        if read is not None:
            read.append(i)
        yield Chunk(i * 10 + 1, [[str(i)]] * 10, ["x"])


def test_the_chunks_come_in_order_all_of_them() -> None:
    assert [c.first_row for c in read_ahead(chunks(50))] == [i * 10 + 1 for i in range(50)]


def test_the_readers_error_is_raised_after_the_chunks_before_it() -> None:
    seen = []
    with pytest.raises(OSError, match="broken at chunk 7"):
        for chunk in read_ahead(chunks(20, fail_at=7)):
            seen.append(chunk.first_row)
    assert seen == [i * 10 + 1 for i in range(7)]


def test_a_consumer_that_stops_stops_the_reader_a_few_chunks_on() -> None:
    read: list[int] = []
    before = threading.active_count()
    ahead = read_ahead(chunks(1000, read=read), depth=2)
    with closing(ahead):
        for chunk in ahead:
            if chunk.first_row > 30:
                break
    assert threading.active_count() == before  # its thread has ended
    assert len(read) < 10  # the 4 taken, the 2 queued and the one in hand at most
