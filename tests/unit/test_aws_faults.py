"""Which SDK errors say AWS cannot be used now (503 aws_unavailable), and how readiness reads what
the real calls said of AWS (aws.Reachability)."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)

from aimass.aws import DOWN_FOR_S, Reachability
from aimass.gateways.transient import unavailable

URL = "http://127.0.0.1:1"


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetItem"
    )


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url=URL),
        ConnectionClosedError(endpoint_url=URL),
        ReadTimeoutError(endpoint_url=URL),
        ConnectTimeoutError(endpoint_url=URL),
        client_error("ServiceUnavailable", 503),
        client_error("InternalError", 500),
        client_error("ThrottlingException", 400),
        client_error("SomethingNew", 502),
    ],
    ids=lambda e: type(e).__name__ + getattr(e, "operation_name", ""),
)
def test_connection_failures_5xx_and_throttling_are_aws_unavailable(error: Exception) -> None:
    down = unavailable(error)
    assert down is not None
    assert (down.status, down.code) == (503, "aws_unavailable")
    assert int(down.headers["Retry-After"]) > 0
    assert down.__cause__ is error


@pytest.mark.parametrize(
    "error",
    [
        client_error("ResourceNotFoundException", 400),
        client_error("AccessDenied", 403),
        client_error("ConditionalCheckFailedException", 400),
        NoCredentialsError(),
        ParamValidationError(report="bad"),
        ValueError("not the SDK's"),
    ],
)
def test_other_errors_are_not_a_matter_of_waiting(error: Exception) -> None:
    assert unavailable(error) is None


def test_a_failed_call_makes_aws_unreachable_until_one_answers() -> None:
    seen = Reachability()
    assert seen.down(0.0) is None  # nothing heard: not known to be down
    seen.answered(1.0)
    seen.failed(2.0, "EndpointConnectionError")
    assert seen.down(3.0) == "EndpointConnectionError"
    seen.answered(4.0)
    assert seen.down(5.0) is None


def test_a_failure_with_nothing_heard_since_counts_only_for_a_while() -> None:
    seen = Reachability()
    seen.failed(10.0, "ReadTimeoutError")
    assert seen.down(10.0 + DOWN_FOR_S) == "ReadTimeoutError"
    assert seen.down(10.0 + DOWN_FOR_S + 1) is None
    assert seen.heard_since(10.0) and not seen.heard_since(10.5)
