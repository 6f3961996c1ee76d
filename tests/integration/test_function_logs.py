"""A function's log: the lines of aimass's own modules come out through the function's Powertools
Logger, as JSON with its service name and Lambda context, whatever the service is called."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from aimass.local.stack import FAKE_CREDENTIALS
from tests.support import EVENTS, REPO

# A fresh interpreter: the test process's loggers are configured already, and the Lambda runtime
# imports a function into a process of its own.
RUN_BATCH_HANDLER = """
import json, sys
from aimass.local.lambda_runtime import LambdaContext, load_handler
event = json.load(open(sys.argv[1]))
event["Records"][0]["s3"]["bucket"]["name"] = "someone-elses-bucket"
answer = load_handler("batch")(event, LambdaContext(function_name="aimass-batch"))
assert answer == {"files": []}, answer
"""


def test_a_domain_modules_line_is_json_with_the_functions_service_name() -> None:
    # Given the batch function deployed under a service name other than the package's
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **FAKE_CREDENTIALS,
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "my-service",
        "POWERTOOLS_METRICS_NAMESPACE": "aimass",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AIMASS_BUCKET": "aimass-test",
    }

    # When it gets an event for a file in a bucket that is not its stack's (aimass.batch.drop warns)
    result = subprocess.run(
        [sys.executable, "-c", RUN_BATCH_HANDLER, str(EVENTS / "s3_incoming_csv.json")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # Then the module's warning is a JSON line of the function's log, with its service and context
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    [warning] = [line for line in lines if "not this stack's bucket" in line.get("message", "")]
    assert warning["service"] == "my-service"
    assert warning["level"] == "WARNING"
    assert warning["name"] == "aimass.batch.drop"
    assert warning["function_name"] == "aimass-batch"
    assert "not this stack's bucket" not in result.stderr
