"""The total deadline of a call to a SageMaker endpoint (aimass.config): retries included, it fits
the settings' deadline, which fits under the function's 29 s (template.yaml), or the settings refuse."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from aimass.config import Settings, sagemaker_worst_case_s
from aimass.local import template


def test_the_worst_case_counts_every_attempt_and_the_longest_backoff_before_each_retry() -> None:
    assert sagemaker_worst_case_s(1, 1.0, 6.0) == 7.0
    # before retry 1: up to 1 s of backoff, plus up to 5 s for a Retry-After; before retry 2: 2 + 5 s
    assert sagemaker_worst_case_s(2, 1.0, 6.0) == 2 * 7.0 + 6.0
    assert sagemaker_worst_case_s(3, 0.5, 1.0) == 3 * 1.5 + 6.0 + 7.0


def test_the_defaults_fit_the_deadline_which_fits_the_functions_timeout() -> None:
    defaults = Settings.from_environment()
    worst = sagemaker_worst_case_s(
        defaults.sagemaker_max_attempts,
        defaults.sagemaker_connect_timeout_s,
        defaults.sagemaker_read_timeout_s,
    )
    function_timeout_s = template.load()["Globals"]["Function"]["Timeout"]
    online = template.resource_properties("OnlineFunction")

    assert worst <= defaults.sagemaker_deadline_s
    assert "Timeout" not in online  # the API's functions have the Globals' timeout
    assert defaults.sagemaker_deadline_s < function_timeout_s <= 29


def test_settings_whose_calls_could_outlast_the_deadline_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMASS_SAGEMAKER_MAX_ATTEMPTS", "3")

    with pytest.raises(ValidationError) as refused:
        Settings.from_environment()

    message = str(refused.value)
    assert "endpoint calls may take 34 s" in message and "AIMASS_SAGEMAKER_DEADLINE_S (20 s)" in message
    monkeypatch.setenv("AIMASS_SAGEMAKER_READ_TIMEOUT_S", "1")
    assert Settings.from_environment().sagemaker_max_attempts == 3


def test_the_deadline_cannot_be_set_above_what_the_function_leaves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMASS_SAGEMAKER_DEADLINE_S", "28")

    with pytest.raises(ValidationError, match="sagemaker_deadline_s"):
        Settings.from_environment()


def test_the_client_is_made_with_the_settings_attempts_and_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    from aimass import aws
    from aimass.config import settings

    monkeypatch.setenv("AIMASS_SAGEMAKER_READ_TIMEOUT_S", "4.5")
    settings.cache_clear()
    aws.reset()
    try:
        config = aws.client("sagemaker-runtime").meta.config
    finally:
        settings.cache_clear()
        aws.reset()

    assert (config.read_timeout, config.connect_timeout) == (4.5, 1.0)
    assert config.retries == {"total_max_attempts": 2, "mode": "standard"}
