"""The OpenAPI fuzzer in the suite: schemathesis generates requests for every operation of the API's
own document (valid and invalid bodies, paths, queries) and sends them to the app over moto with the
demos registered. None may answer a 5xx, except the 503 of a part this test stack does not have (the
retraining pipeline). The full probe (about 29,000 cases) ran without a 5xx; this keeps a sample of
it in every run: `FUZZ_EXAMPLES` cases per operation, seeded, so that a failure reproduces.

The operations are driven with Hypothesis directly: schemathesis's pytest fixture loader does not
work with this pytest (it reads a private attribute pytest 9 dropped)."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aimass.api.app import create_app

FUZZ_EXAMPLES = 15
# A 503 that says what this test stack lacks, not a fault.
ABSENT_HERE = {"pipeline_unavailable"}
# Generated names are almost never registered ones: most cases would stop at a 404. Path parameters
# are taken from what the stack has as often as they are generated.
KNOWN = {"name": ["breast-cancer", "digits"], "version": [1], "alias": ["champion"]}


def test_no_generated_request_gets_a_server_error(registered: Any) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30  # every route of the document, not a few
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy(), known=st.booleans(), pick=st.integers(0, 1))
        @settings(
            max_examples=FUZZ_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def probe(case: Any, known: bool, pick: int) -> None:
            if known and case.path_parameters:
                for name, values in KNOWN.items():
                    if name in case.path_parameters:
                        case.path_parameters[name] = values[pick % len(values)]
            response = case.call()
            if response.status_code == 503 and response.json()["error"]["code"] in ABSENT_HERE:
                return
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
                )

        probe()
    assert failures == []
