"""SageMaker Runtime's InvokeEndpoint in front of the container, as SageMaker itself fronts it: what
the local stack's emulated endpoint answers, so that boto3's `sagemaker-runtime` client (pointed at
the server by its endpoint URL) reaches the same server a real endpoint runs.

    POST /endpoints/{EndpointName}/invocations

The request's `Content-Type`, `Accept` and `X-Amzn-SageMaker-*` headers are the container's own, so a
call is passed to `/invocations` as it is. What SageMaker adds is reproduced: the answer names the
production variant (`X-Amzn-Invoked-Production-Variant`), an unknown endpoint is a `ValidationError`,
and a container's error answer becomes a `ModelError` (424) that carries the container's status and
body (`OriginalStatusCode`, `OriginalMessage`), each error named by `x-amzn-ErrorType` as AWS's
rest-json services name them.
"""

from __future__ import annotations

import json

from starlette.responses import JSONResponse, Response

ERROR_TYPE = "x-amzn-ErrorType"
# The account SageMaker would name in its messages; the emulated endpoint has none.
ACCOUNT = "000000000000"
DEFAULT_VARIANT = "AllTraffic"


def aws_error(status: int, kind: str, message: str, **fields: object) -> JSONResponse:
    return JSONResponse({"Message": message, **fields}, status_code=status, headers={ERROR_TYPE: kind})


def unknown_endpoint(name: str) -> JSONResponse:
    return aws_error(400, "ValidationError", f"Endpoint {name} of account {ACCOUNT} not found.")


def model_error(answer: Response, variant: str, endpoint: str) -> JSONResponse:
    """The container's error answer as SageMaker reports it to the caller."""
    original = bytes(answer.body).decode("utf-8", "replace")
    try:
        message = json.loads(original)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = original[:1000]
    side = "client" if answer.status_code < 500 else "server"
    return aws_error(
        424,
        "ModelError",
        f'Received {side} error ({answer.status_code}) from {variant} with message "{message}". '
        f"See the log of endpoint {endpoint} for more information.",
        OriginalStatusCode=answer.status_code,
        OriginalMessage=original,
        LogStreamArn=f"arn:aws:logs:local:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/{endpoint}",
    )
