"""A model's config.json as the inference server reads it: every key optional, each checked, and a
refusal that names the file, the key and what it got."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gpu_endpoints.models import ModelConfig, read_config
from gpu_endpoints.settings import BatchingConfig, SettingsError

SERVER = BatchingConfig(
    enabled=True, max_batch_size=16, max_queue_delay_ms=3.0, instances=2, max_queue_size=64
)


def write(folder: Path, config: Any) -> Path:
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def refusal(folder: Path, config: Any) -> str:
    with pytest.raises(SettingsError) as refused:
        read_config(write(folder, config), SERVER)
    return str(refused.value)


def test_a_model_without_config_json_takes_the_servers_batching(tmp_path: Path) -> None:
    assert read_config(tmp_path, SERVER) == ModelConfig(SERVER)


def test_an_empty_config_takes_the_servers_batching(tmp_path: Path) -> None:
    assert read_config(write(tmp_path, {}), SERVER) == ModelConfig(SERVER, None, None)


def test_every_key_given_replaces_the_servers_value(tmp_path: Path) -> None:
    config = {
        "batching": False,
        "max_batch_size": 8,
        "max_queue_delay_ms": 0,
        "instances": 3.0,
        "max_queue_size": 5,
        "features": ["a", "b"],
        "memory_mb": 120,
    }
    read = read_config(write(tmp_path, config), SERVER)
    assert read == ModelConfig(
        BatchingConfig(
            enabled=False, max_batch_size=8, max_queue_delay_ms=0.0, instances=3, max_queue_size=5
        ),
        ("a", "b"),
        120.0,
    )
    assert type(read.batching.instances) is int and type(read.batching.max_queue_delay_ms) is float


@pytest.mark.parametrize(("given", "enabled"), [("off", False), ("on", True), ("0", False), (True, True)])
def test_batching_is_a_boolean_or_a_flags_word(tmp_path: Path, given: Any, enabled: bool) -> None:
    assert read_config(write(tmp_path, {"batching": given}), SERVER).batching.enabled is enabled


def test_an_empty_features_list_is_no_features(tmp_path: Path) -> None:
    assert read_config(write(tmp_path, {"features": []}), SERVER).features is None


def test_a_file_that_is_not_json_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{batching: off")
    with pytest.raises(SettingsError, match=r"config\.json: not valid JSON \("):
        read_config(tmp_path, SERVER)


def test_json_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    assert refusal(tmp_path, [1, 2]) == f"{tmp_path / 'config.json'}: expected an object"


def test_unknown_keys_are_refused_with_the_known_ones(tmp_path: Path) -> None:
    assert refusal(tmp_path, {"max_batch_sise": 8, "colour": 1}) == (
        f"{tmp_path / 'config.json'}: unknown keys colour, max_batch_sise (known: batching, features, "
        "instances, max_batch_size, max_queue_delay_ms, max_queue_size, memory_mb)"
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"batching": "sometimes"}, "batching='sometimes': expected one of on/off, true/false, 1/0"),
        ({"max_batch_size": 0}, "max_batch_size: expected a number of at least 1, got 0"),
        ({"max_batch_size": True}, "max_batch_size: expected a number of at least 1, got True"),
        ({"max_batch_size": "8"}, "max_batch_size: expected a number of at least 1, got '8'"),
        ({"max_batch_size": 2.5}, "max_batch_size: expected an integer, got 2.5"),
        ({"max_queue_delay_ms": -1}, "max_queue_delay_ms: expected a number of at least 0, got -1"),
        ({"instances": 0}, "instances: expected a number of at least 1, got 0"),
        ({"max_queue_size": 1.5}, "max_queue_size: expected an integer, got 1.5"),
        ({"features": "a,b"}, "features: expected a list of names, got 'a,b'"),
        ({"features": ["a", ""]}, "features: expected a list of names, got ['a', '']"),
        ({"features": ["a", 1]}, "features: expected a list of names, got ['a', 1]"),
        ({"memory_mb": -1}, "memory_mb: expected a number of MB, got -1"),
        ({"memory_mb": False}, "memory_mb: expected a number of MB, got False"),
        ({"memory_mb": "300"}, "memory_mb: expected a number of MB, got '300'"),
    ],
)
def test_a_value_out_of_range_is_refused_naming_the_file_and_key(
    tmp_path: Path, config: dict[str, Any], message: str
) -> None:
    found = refusal(tmp_path, config)
    assert found.startswith(f"{tmp_path / 'config.json'}: ")
    assert message in found


def test_the_first_bad_key_in_reading_order_is_the_one_named(tmp_path: Path) -> None:
    found = refusal(tmp_path, {"memory_mb": -1, "features": 3, "max_queue_size": 0})
    assert "max_queue_size" in found and "memory_mb" not in found and "features" not in found


def test_front_ends_come_from_the_environment_and_travel_to_other_processes() -> None:
    from gpu_endpoints.settings import Settings

    settings = Settings.from_env({"AIMASS_GPU_FRONTENDS": "4"})

    assert settings.frontends == 4 and Settings().frontends == 0
    assert Settings.from_env(settings.as_env()) == settings


def test_front_ends_and_workers_together_are_refused_naming_both() -> None:
    from gpu_endpoints.settings import Settings

    with pytest.raises(SettingsError, match="AIMASS_GPU_FRONTENDS=2 and SAGEMAKER_MODEL_SERVER_WORKERS=3"):
        Settings.from_env({"AIMASS_GPU_FRONTENDS": "2", "SAGEMAKER_MODEL_SERVER_WORKERS": "3"})
