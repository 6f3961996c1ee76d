"""Which SDK errors may pass if the call is made again: throttling, a 5xx, a dropped connection.
The pipeline's tasks raise them as TransientFailure, which the state machine retries."""

from __future__ import annotations

from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

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


def transient(error: BaseException) -> bool:
    if isinstance(error, ClientError):
        return error.response.get("Error", {}).get("Code") in TRANSIENT_CODES
    return isinstance(error, ConnectionError | HTTPClientError)
