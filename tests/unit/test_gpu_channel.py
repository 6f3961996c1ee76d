"""The channel between the front ends and the model process: what an Outbox writes, and when."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from gpu_endpoints.channel import MAX_MESSAGE_BYTES, READ_BYTES, Outbox, frame, messages, pack, unpack


class Recorded:
    """The writing end of a connection, as an Outbox uses it: each write kept as it was made."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return False


async def read_back(*pieces: bytes) -> list[tuple[Any, ...]]:
    """What the reading end makes of `pieces`, each arriving on its own, then the end of the stream."""
    reader = asyncio.StreamReader()

    async def arrive() -> None:
        for piece in pieces:
            reader.feed_data(piece)
            await asyncio.sleep(0)  # the reader takes what has come before the next piece
        reader.feed_eof()

    arriving = asyncio.create_task(arrive())
    found = [message async for message in messages(reader)]
    await arriving
    return found


def test_messages_sent_over_two_turns_of_the_loop_leave_in_one_write_in_order() -> None:
    async def scenario() -> tuple[list[bytes], list[tuple[Any, ...]]]:
        writer = Recorded()
        outbox = Outbox(writer)  # type: ignore[arg-type]
        outbox.send(("infer", 1))
        outbox.send(("infer", 2))
        await asyncio.sleep(0)  # the next turn: a request that arrived meanwhile joins them
        outbox.send(("infer", 3))
        assert writer.writes == []
        for _ in range(3):
            await asyncio.sleep(0)
        outbox.send(("infer", 4))  # after the write: the next one
        for _ in range(3):
            await asyncio.sleep(0)
        return writer.writes, await read_back(b"".join(writer.writes))

    writes, messages = asyncio.run(scenario())
    assert len(writes) == 2
    assert messages == [("infer", 1), ("infer", 2), ("infer", 3), ("infer", 4)]


def test_arrays_cross_the_channel_as_their_bytes_and_come_back_equal() -> None:
    feeds = {
        "image": np.arange(128, dtype=np.float32).reshape(2, 8, 8),
        "label": np.array([3, 7], dtype=np.int64),
        "zipmap": [{"a": 0.5}, {"a": 0.25}],
    }
    back = unpack(pack(feeds))
    np.testing.assert_array_equal(back["image"], feeds["image"])
    assert back["image"].dtype == np.float32 and back["label"].dtype == np.int64
    assert back["zipmap"] == feeds["zipmap"]


def test_messages_come_back_whole_however_the_bytes_arrive() -> None:
    image = pack({"image": np.arange(64, dtype=np.float32).reshape(1, 8, 8)})
    sent = [("infer", k, "model", image, False) for k in range(5)]
    data = b"".join(frame(message) for message in sent)
    for cut in [1, 3, 4, 5, 97, len(data) // 2, len(data)]:
        found = asyncio.run(read_back(*[data[at : at + cut] for at in range(0, len(data), cut)]))
        assert [m[:3] for m in found] == [m[:3] for m in sent]
        np.testing.assert_array_equal(unpack(found[2][3])["image"], unpack(image)["image"])


def test_a_message_larger_than_a_read_comes_back_whole() -> None:
    big = np.arange(READ_BYTES // 2, dtype=np.float32)  # twice the bytes of one read
    data = frame(("infer", 0)) + frame(("answer", 1, pack({"big": big}))) + frame(("infer", 2))
    for cut in [4096, 100_000, len(data)]:
        found = asyncio.run(read_back(*[data[at : at + cut] for at in range(0, len(data), cut)]))
        assert [m[:2] for m in found] == [("infer", 0), ("answer", 1), ("infer", 2)]
        np.testing.assert_array_equal(unpack(found[1][2])["big"], big)


def test_a_connection_that_ends_mid_message_ends_the_messages() -> None:
    data = frame(("infer", 1)) + frame(("infer", 2))
    assert asyncio.run(read_back(data[:-3])) == [("infer", 1)]
    assert asyncio.run(read_back(b"")) == []


def test_a_length_over_the_bound_is_refused() -> None:
    with pytest.raises(ConnectionError, match="bytes on the model channel"):
        asyncio.run(read_back((MAX_MESSAGE_BYTES + 1).to_bytes(4, "little") + b"x" * 8))
