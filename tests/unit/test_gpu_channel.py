"""The channel between the front ends and the model process: what an Outbox writes, and when."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from gpu_endpoints.channel import Outbox, pack, receive, unpack


class Recorded:
    """The writing end of a connection, as an Outbox uses it: each write kept as it was made."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return False


async def read_back(data: bytes) -> list[tuple[Any, ...]]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    messages = []
    while (message := await receive(reader)) is not None:
        messages.append(message)
    return messages


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
