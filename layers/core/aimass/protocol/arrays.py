"""Binary payloads: one `.npy` array, or an `.npz` archive of arrays by name. The Lambda sends a
version's feeds to its SageMaker endpoint as `.npz` and reads the outputs back the same way; the
inference server takes and answers both."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence

import numpy as np

from aimass.protocol.errors import BadRequest, ValidationFailed, field_error
from aimass.protocol.tensors import Spec, from_array

NPY = "application/x-npy"
NPZ = "application/x-npz"


def to_npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def to_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def from_npz(data: bytes) -> dict[str, np.ndarray]:
    """The arrays of an .npz archive; BadRequest when the bytes are not one."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise BadRequest(
                    "the body is a .npy array, not an .npz archive: send it as application/x-npy"
                )
            return {name: archive[name] for name in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise BadRequest(f"the body is not an .npz archive: {error}") from None


def from_npy(data: bytes) -> np.ndarray:
    """The array of a .npy body; BadRequest when the bytes are not one."""
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise BadRequest(f"the body is not a .npy array: {error}") from None
    if not isinstance(array, np.ndarray):
        raise BadRequest("the body is an .npz archive: send it as application/x-npz")
    return array


def npy_feeds(data: bytes, inputs: Sequence[Spec]) -> dict[str, np.ndarray]:
    """A .npy body as the feeds of a single-input model."""
    array = from_npy(data)
    if len(inputs) != 1:
        names = ", ".join(spec.name for spec in inputs)
        raise ValidationFailed(
            f"the model takes {len(inputs)} inputs ({names}): send application/x-npz, one array per input",
            [field_error(["body"], "one array for several inputs", "input_count")],
        )
    return {inputs[0].name: from_array(array, inputs[0], ["body"])}


def npz_feeds(data: bytes, inputs: Sequence[Spec]) -> dict[str, np.ndarray]:
    """An .npz body as the model's feeds, one array per input name."""
    arrays = from_npz(data)
    specs = {spec.name: spec for spec in inputs}
    errors = [
        field_error(["body", n], "required input is missing", "missing") for n in specs if n not in arrays
    ]
    errors += [field_error(["body", n], "unknown input", "unknown_input") for n in arrays if n not in specs]
    feeds: dict[str, np.ndarray] = {}
    for name, array in arrays.items():
        if name in specs:
            try:
                feeds[name] = from_array(array, specs[name], ["body", name])
            except ValidationFailed as error:
                errors += error.details
    if errors:
        raise ValidationFailed("the arrays do not match the model's inputs", errors)
    return feeds
