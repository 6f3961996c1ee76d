"""Which SDK errors may pass if the call is made again: throttling, a 5xx, a dropped connection.
The pipeline's tasks raise them as TransientFailure, which the state machine retries; the API
answers them as AwsUnavailable (503, Retry-After), the one error it gives for an AWS it cannot use
now, whichever call met it."""

from __future__ import annotations

from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

from aimass.errors import AwsUnavailable

TRANSIENT_CODES = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "TooManyRequestsException",
    "SlowDown",
    "InternalError",
    "InternalServerError",
    "ServiceUnavailable",
    "RequestTimeout",
}

# Seconds a client is told to wait after AWS could not answer: a little more than the registry TTL
# that a recovered AWS is next asked after.
RETRY_AFTER_S = 5


def transient(error: BaseException) -> bool:
    """A dropped, refused or timed-out connection (EndpointConnectionError, ConnectTimeoutError,
    ReadTimeoutError, ConnectionClosedError...), throttling, or any 5xx."""
    if isinstance(error, ClientError):
        response = error.response
        return (
            response.get("Error", {}).get("Code") in TRANSIENT_CODES
            or response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500
        )
    return isinstance(error, ConnectionError | HTTPClientError)


def unavailable(error: BaseException) -> AwsUnavailable | None:
    """The API's error for an SDK error that says AWS cannot be used now; None for any other error
    (a missing key, a refused permission: not a matter of waiting)."""
    if not transient(error):
        return None
    reason = type(error).__name__
    if isinstance(error, ClientError):
        reason = error.response.get("Error", {}).get("Code", "") or reason
    down = AwsUnavailable(
        f"AWS cannot be reached now ({reason}); retry later",
        [{"loc": ["aws"], "message": str(error)[:300], "type": reason or "unavailable"}],
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )
    down.__cause__ = error
    return down
