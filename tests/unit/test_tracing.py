"""The functions' Tracer: the X-Ray SDK only while tracing is on (aimass.tracing)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from aimass.tracing import NoTracing, function_tracer, tracing_on

TRACED_LAMBDA = {"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "false"}


@pytest.mark.parametrize(
    ("env", "on"),
    [
        (TRACED_LAMBDA, True),
        ({**TRACED_LAMBDA, "POWERTOOLS_TRACE_DISABLED": "true"}, False),
        ({**TRACED_LAMBDA, "AWS_SAM_LOCAL": "true"}, False),
        ({"POWERTOOLS_TRACE_DISABLED": "false"}, False),  # not in Lambda: no daemon to send to
    ],
)
def test_tracing_is_on_only_in_lambda_unless_disabled(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], on: bool
) -> None:
    for name in ("LAMBDA_TASK_ROOT", "AWS_SAM_LOCAL", "AWS_CHALICE_CLI_MODE", "POWERTOOLS_TRACE_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    assert tracing_on() is on


def test_a_traced_handler_still_answers_while_tracing_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    tracer = function_tracer()

    @tracer.capture_lambda_handler(capture_response=False)
    def handler(event: dict[str, int], context: object) -> dict[str, int]:
        return {"answer": event["question"] * 2}

    assert isinstance(tracer.provider, NoTracing)
    assert handler({"question": 21}, None) == {"answer": 42}


def test_the_xray_sdk_is_not_imported_while_tracing_is_off() -> None:
    # A fresh interpreter: this one may have imported the SDK for another test.
    code = (
        "import sys; from aimass.tracing import function_tracer; function_tracer(); "
        "print(sorted(m for m in sys.modules if m.startswith('aws_xray_sdk.core')))"
    )
    env = {**os.environ, "POWERTOOLS_TRACE_DISABLED": "true"}
    found = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)

    assert found.stdout.strip() == "[]"
