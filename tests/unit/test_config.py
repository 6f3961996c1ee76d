"""The settings read from the environment (aimass.config): AIMASS_<FIELD> in any case, the region from
AWS_DEFAULT_REGION, every value validated by the field's type and bounds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from aimass.config import Settings


def test_each_field_is_read_from_its_variable_in_any_case_and_converted_to_its_type() -> None:
    read = Settings.from_environment(
        {
            "AIMASS_BUCKET": "models-prod",
            "aimass_max_instances": "50",
            "Aimass_Registry_Ttl_S": "2.5",
            "AIMASS_CAPTURE_ENABLED": "false",
            "AIMASS_MODEL_CACHE_DIR": "/var/cache/models",
            "AIMASS_PII_KEY": "s3cret",
        }
    )

    assert read.bucket == "models-prod" and read.max_instances == 50 and read.registry_ttl_s == 2.5
    assert read.capture_enabled is False and read.model_cache_dir == Path("/var/cache/models")
    assert read.pii_key is not None and read.pii_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(read)


def test_what_the_environment_does_not_set_keeps_its_default_and_other_variables_are_ignored() -> None:
    read = Settings.from_environment({"AIMASS_NOT_A_SETTING": "1", "BUCKET": "elsewhere", "PATH": "/bin"})

    assert read == Settings()
    assert read.bucket == "aimass-local" and read.sagemaker_endpoint is None


def test_the_region_is_aws_default_region_not_an_aimass_variable() -> None:
    assert Settings.from_environment({"AWS_DEFAULT_REGION": "eu-west-1"}).region == "eu-west-1"
    assert Settings.from_environment({"AIMASS_REGION": "eu-west-1"}).region == "us-east-1"


def test_a_value_its_field_refuses_names_the_field() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings.from_environment({"AIMASS_MAX_INSTANCES": "many", "AIMASS_CAPTURE_SAMPLE_FRACTION": "1.5"})

    fields = {error["loc"][0] for error in refused.value.errors()}
    assert fields == {"max_instances", "capture_sample_fraction"}


def test_the_process_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMASS_STAGE", "prod")

    assert Settings.from_environment().stage == "prod"


def test_reading_the_settings_imports_no_settings_framework() -> None:
    """pydantic-settings' import cost the online function's cold start 20-50 ms of CPU."""
    code = "import sys, aimass.config; aimass.config.settings(); print('pydantic_settings' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert done.stdout.strip() == "False"
