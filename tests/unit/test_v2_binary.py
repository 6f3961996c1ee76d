"""The V2 binary tensor data extension, on bodies built by hand the way the specification lays them
out: a JSON header, then each binary input's raw bytes in input order."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest

from aimass.protocol import binary, v2
from aimass.protocol.errors import BadRequest, ValidationFailed
from aimass.protocol.tensors import Spec
from tests.support import binary_input, binary_request


def body(header: dict[str, Any], *chunks: bytes) -> tuple[bytes, str]:
    """The request's bytes and its header length, as binary.decode takes them."""
    raw, headers = binary_request(header, *chunks)
    return raw, headers["inference-header-content-length"]


def length_prefixed(*values: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def test_binary_inputs_are_read_in_order_little_endian_row_major_beside_a_json_one() -> None:
    # Given an FP32 [2, 2] and an INT64 [2] input in binary, and a JSON input between them
    floats = struct.pack("<4f", 1.0, 2.0, 3.0, 4.0)
    ints = struct.pack("<2q", -1, 2**40)
    raw, length = body(
        {
            "inputs": [
                binary_input("x", [2, 2], "FP32", 16),
                {"name": "flag", "shape": [1], "datatype": "BOOL", "data": [True]},
                binary_input("n", [2], "INT64", 16),
            ]
        },
        floats,
        ints,
    )

    # When the request is decoded and fed to a model with those inputs
    request = binary.decode(raw, length)
    specs = [Spec("x", "float32", (None, 2)), Spec("flag", "bool", (1,)), Spec("n", "int64", (2,))]
    feeds = v2.feeds(request.inputs, specs)

    # Then each tensor has its values, type and shape
    np.testing.assert_array_equal(feeds["x"], np.array([[1, 2], [3, 4]], dtype=np.float32))
    assert feeds["x"].dtype == np.float32
    np.testing.assert_array_equal(feeds["n"], np.array([-1, 2**40], dtype=np.int64))
    assert feeds["flag"].tolist() == [True]


def test_bytes_elements_are_length_prefixed_strings() -> None:
    data = length_prefixed(b"benign", b"", "ma\u00efs".encode())
    raw, length = body({"inputs": [binary_input("s", [3], "BYTES", len(data))]}, data)

    feeds = v2.feeds(binary.decode(raw, length).inputs, [Spec("s", "string", (None,))])

    assert feeds["s"].tolist() == ["benign", "", "ma\u00efs"]


@pytest.mark.parametrize(
    ("header", "data", "where"),
    [
        ({"inputs": [binary_input("x", [2, 2], "FP32", 12)]}, b"\0" * 12, "binary_data_size"),
        ({"inputs": [binary_input("x", [2, 2], "FP32", 32)]}, b"\0" * 16, "binary_data_size"),
        ({"inputs": [binary_input("x", [2, 2], "FP32", 16)]}, b"\0" * 20, "body"),
        ({"inputs": [binary_input("x", [2], "FP32", "8")]}, b"\0" * 8, "binary_data_size"),
        ({"inputs": [binary_input("s", [2], "BYTES", 9)]}, length_prefixed(b"abcde"), "binary_data_size"),
        ({"inputs": [binary_input("s", [1], "BYTES", 6)]}, length_prefixed(b"\xff\xfe"), "binary_data_size"),
    ],
    ids=[
        "too few bytes",
        "more than the body",
        "bytes left over",
        "a size not an integer",
        "elements",
        "utf8",
    ],
)
def test_binary_data_that_does_not_fit_is_a_422_naming_the_input(
    header: dict[str, Any], data: bytes, where: str
) -> None:
    raw, length = body(header, data)

    with pytest.raises(ValidationFailed) as refused:
        binary.decode(raw, length)

    assert refused.value.status == 422
    assert refused.value.details[0]["loc"][-1] == where, refused.value.details


@pytest.mark.parametrize("length", ["0", "abc", "-3", "10000"])
def test_a_header_length_outside_the_body_is_a_400(length: str) -> None:
    raw, _ = body({"inputs": [binary_input("x", [1], "FP32", 4)]}, b"\0" * 4)

    with pytest.raises(BadRequest) as refused:
        binary.decode(raw, length)

    assert refused.value.details[0]["loc"] == ["headers", binary.HEADER]


def test_a_header_that_is_not_json_is_bad_json() -> None:
    with pytest.raises(BadRequest) as refused:
        binary.decode(b"{nope" + b"\0" * 4, "5")

    assert refused.value.code == "bad_json"


def response() -> v2.Response:
    return v2.response(
        "m",
        [
            {"name": "label", "datatype": "INT64", "shape": [2], "data": [3, 7]},
            {"name": "probs", "datatype": "FP32", "shape": [2, 2], "data": [0.25, 0.75, 0.5, 0.5]},
            {"name": "text", "datatype": "BYTES", "shape": [1], "data": ['{"a": 1.0}']},
        ],
    )


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def test_every_output_is_binary_when_the_request_asks_for_binary_data_output() -> None:
    raw, length = body(
        {
            "parameters": {"binary_data_output": True},
            "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],
        }
    )
    wanted = binary.wanted(binary.decode(raw, length))

    content, size = binary.encode(response(), wanted, dumps)

    header = json.loads(content[:size])
    sizes = [o["parameters"]["binary_data_size"] for o in header["outputs"]]
    assert all("data" not in o for o in header["outputs"])
    assert sizes == [16, 16, 4 + 10]
    rest = content[size:]
    assert struct.unpack("<2q", rest[:16]) == (3, 7)
    assert struct.unpack("<4f", rest[16:32]) == (0.25, 0.75, 0.5, 0.5)
    assert rest[32:] == length_prefixed(b'{"a": 1.0}')


def test_only_the_outputs_asked_for_in_binary_are_binary() -> None:
    request = v2.parse(
        {
            "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}],
            "outputs": [{"name": "label"}, {"name": "probs", "parameters": {"binary_data": True}}],
        }
    )

    content, size = binary.encode(response(), binary.wanted(request), dumps)

    outputs = {o["name"]: o for o in json.loads(content[:size])["outputs"]}
    assert outputs["label"]["data"] == [3, 7]
    assert outputs["probs"]["parameters"] == {"binary_data_size": 16}
    assert struct.unpack("<4f", content[size:]) == (0.25, 0.75, 0.5, 0.5)


def test_a_json_request_asks_for_no_binary_output() -> None:
    request = v2.parse({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]})

    assert not binary.wanted(request)
