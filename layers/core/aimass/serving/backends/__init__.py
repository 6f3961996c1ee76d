"""How a version runs, looked up by the kind its backend string names, in one table.

A backend kind turns a version's record into a Runner: the ONNX feeds in, the outputs by name out.
Everything around the run (decoding, quality checks, rules, capture, metrics) is the request
pipeline's and the same for every kind. The kinds:

- `lambda` (`OnnxBackend`, aimass.serving.backends.onnx): in this process, on ONNX Runtime;
- `sagemaker` (`SageMakerBackend`, aimass.serving.backends.sagemaker): on a SageMaker endpoint;
- `graph` (`GraphBackend`, aimass.serving.backends.graph): its members' runners, in this process.

A new kind is a module with a class that has `runner(record)` and
`local(record)`, and one entry in the table that aimass.wiring gives the model store: never a branch
in the pipeline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from aimass.contracts.registry import ModelVersion

# Runs a version's model: the ONNX feeds in, its outputs by name out.
Runner = Callable[[dict[str, Any]], dict[str, Any]]


class BackendKind(Protocol):
    def runner(self, record: ModelVersion) -> Runner:
        """How to run this version; raises what the API answers when it cannot be run."""
        ...

    def local(self, record: ModelVersion) -> bool:
        """Whether running this version now needs nothing outside this process (no download, no
        network): such a request may run on the server's event loop rather than a thread."""
        ...


@dataclass(frozen=True)
class StepRun:
    """One step of a runner made of steps (a graph's) as it ran: its name, the member version, its
    outputs, and the instances it took (None: all of them)."""

    name: str
    member: ModelVersion
    outputs: dict[str, Any]
    rows: list[int] | None = None


def run_with_steps(run: Runner, feeds: dict[str, Any]) -> tuple[dict[str, Any], list[StepRun]]:
    """The outputs and, from a runner made of steps (`with_steps`: a graph's), each step's run; a
    runner of one model has none."""
    with_steps = getattr(run, "with_steps", None)
    if with_steps is None:
        return run(feeds), []
    outputs, steps = with_steps(feeds)
    return outputs, steps


def kind_of(backend: str) -> str:
    """The kind a version's backend string names: `lambda`, `sagemaker:<endpoint>` → `sagemaker`."""
    return backend.partition(":")[0]
