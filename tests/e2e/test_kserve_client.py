"""KServe's own V2 REST client, unchanged and on its defaults, against `aimass serve`: server
live/ready, model ready, binary inference (its async client) and the error of an unknown model.

kserve's dependencies conflict with aimass's, so the client runs in its own environment
(`.venv-kserve`, or the Python that AIMASS_KSERVE_PYTHON names), made by `make test` (or
`make .venv-kserve/.installed`) from tests/e2e/requirements-kserve.txt; without one the test is
skipped, except under CI."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from aimass.local import demo
from tests.e2e.conftest import Stack
from tests.support import REPO

pytestmark = pytest.mark.e2e
PYTHON = Path(os.environ.get("AIMASS_KSERVE_PYTHON", REPO / ".venv-kserve" / "bin" / "python"))
CLIENT = Path(__file__).parent / "clients" / "kserve_v2.py"


# `make test` makes .venv-kserve, so CI always runs this; a bare pytest without it skips
@pytest.mark.skipif(
    not PYTHON.exists() and not os.environ.get("CI"), reason=f"no Python with kserve at {PYTHON}"
)
def test_kserves_rest_client_on_its_defaults(stack: Stack, tmp_path: Path) -> None:
    # Given the digits demo's held-out images
    digits = demo.load_or_train("digits", stack.state_dir)
    np.save(tmp_path / "images.npy", digits.holdout[:2])

    # When KServe's client checks the server and the model, infers, and asks for an unknown model
    done = subprocess.run(
        [str(PYTHON), str(CLIENT), stack.url, str(tmp_path / "images.npy")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)

    # Then everything is ready, the answer is scikit-learn's, and the refusal is readable
    assert (got["live"], got["ready"], got["model_ready"]) == (True, True, True)
    assert got["id"] == "k-1"
    np.testing.assert_allclose(
        got["outputs"]["probabilities"], digits.holdout_probabilities[:2], atol=1e-5, rtol=0
    )
    assert "404" in got["unknown_model"] and "no-such-model" in got["unknown_model"]
