"""The channel between the front ends and the model process: messages over a Unix socket.

A message is a tuple pickled with protocol 5 (numpy arrays go as their raw bytes, no JSON and no
copy into lists), preceded by its length (4 bytes, little-endian). Pickle runs any code a message
names, so the socket lives in a folder only the server's user can enter (`private_socket`), and
nothing but the server's own processes ever writes to it: it is never exposed to the network.

Requests carry an id; their answers name it, so one connection carries many requests at once and
answers come back in the order the batcher finishes them. Errors go as the fields of an AimassError
(`error_fields`, `error_from`): the front end answers exactly what the single-process server does.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import struct
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from aimass.protocol.errors import AimassError

_LENGTH = struct.Struct("<I")
# A message larger than this is a bug (the body limit is far below it), not something to buffer.
MAX_MESSAGE_BYTES = 1 << 30
# The most one read of the channel takes from the socket.
READ_BYTES = 1 << 18
# Where the model process listens, in the environment of the front ends it serves.
SOCKET_ENV = "AIMASS_GPU_ENGINE_SOCKET"


def frame(message: tuple[Any, ...]) -> bytes:
    payload = pickle.dumps(message, protocol=5)
    return _LENGTH.pack(len(payload)) + payload


class Outbox:
    """The messages to one connection, written together after two turns of the event loop: under load
    one system call carries many of them, where one each cost ~30 µs of the model process's CPU.
    Two turns, not one: a front end's requests that arrive in the turn after the first one's go in
    the same write (3.5 requests a write instead of 2 on the light demo, unbatched at concurrency 32),
    and the model process, which runs unbatched requests one at a time, wakes less often between
    them (bench/RESULTS.md, "The inference server's invocations without Starlette")."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self._frames: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def send(self, message: tuple[Any, ...]) -> None:
        if not self._frames:
            self._loop.call_soon(self._loop.call_soon, self._flush)
        self._frames.append(frame(message))

    def _flush(self) -> None:
        frames, self._frames = self._frames, []
        if not self.writer.is_closing():
            self.writer.write(b"".join(frames))


# A dict of arrays as plain (name, dtype, shape, bytes) tuples: pickle takes 4 µs for one image's
# answer this way against 19 µs for the arrays themselves (and 10 µs against 33 to read it back).
Packed = tuple[tuple[str, str | None, tuple[int, ...] | None, Any], ...]


def pack(values: Mapping[str, Any]) -> Packed:
    return tuple(
        (name, value.dtype.str, value.shape, value.tobytes())
        if isinstance(value, np.ndarray) and value.dtype != np.object_
        else (name, None, None, value)  # lists of maps, strings: pickled as they are
        for name, value in values.items()
    )


def unpack(packed: Packed) -> dict[str, Any]:
    """The arrays back (read-only views of the message's bytes: nothing downstream writes to them)."""
    return {
        name: value if dtype is None else np.frombuffer(value, dtype=dtype).reshape(shape)
        for name, dtype, shape, value in packed
    }


async def messages(reader: asyncio.StreamReader) -> AsyncIterator[tuple[Any, ...]]:
    """The messages as they come, until the other side closes the connection. Each read takes what
    the socket holds, and every whole message in it is unpickled without waiting again: under load a
    read holds many. Two awaits a message cost about 0.7 µs more each, 3-4 % of the model
    process's CPU per request (bench/RESULTS.md, "The model channel read a buffer at a time"). The
    rest of a message larger than what has come (a large tensor) is read at once."""
    data, at = b"", 0
    try:
        while True:
            if len(data) - at < _LENGTH.size:
                more = await reader.read(READ_BYTES)
                if not more:
                    return
                data, at = data[at:] + more, 0
                continue
            (size,) = _LENGTH.unpack_from(data, at)
            if size > MAX_MESSAGE_BYTES:
                raise ConnectionError(f"a message of {size:,} bytes on the model channel")
            end = at + _LENGTH.size + size
            if end > len(data):
                data = data[at:] + await reader.readexactly(end - len(data))
                at, end = 0, _LENGTH.size + size
            message = pickle.loads(memoryview(data)[at + _LENGTH.size : end])
            at = end
            assert isinstance(message, tuple)
            yield message
    except (asyncio.IncompleteReadError, ConnectionResetError):
        return


def error_fields(error: AimassError) -> tuple[int, str, str, list[dict[str, Any]], dict[str, str]]:
    return error.status, error.code, error.message, error.details, error.headers


def error_from(fields: tuple[int, str, str, list[dict[str, Any]], dict[str, str]]) -> AimassError:
    """The error the model process raised, with its status, code, details and headers."""
    status, code, message, details, headers = fields
    error = AimassError(message, details, headers)
    error.status, error.code = status, code
    return error


def private_socket() -> Path:
    """A socket path in a new folder only this user can enter (mkdtemp makes it 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="aimass-gpu-"))
    os.chmod(folder, 0o700)
    return folder / "engine.sock"
