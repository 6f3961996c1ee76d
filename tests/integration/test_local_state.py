"""The local stack keeps what a user did across restarts (aimass.local.persistence): each test starts
a stack, changes the registry and the bucket, stops it, and starts another on the same state dir.
moto's backends are reset between the two (running_stack), as a new `aimass serve` process starts."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from aimass import aws, wiring
from aimass.api.app import create_app
from aimass.contracts.rules import Ruleset
from aimass.local import demo as demos
from aimass.local import persistence
from aimass.local.demo import GPU_DEMO, TRAINING_DATA_KEY, gpu_network
from aimass.registration import register_version, save_ruleset, set_alias
from tests.conftest import running_stack

BUCKET = "aimass-state-test"
FEEDBACK_KEY = "feedback/breast-cancer/2026/12/06/batch.jsonl"
RULES = Ruleset.model_validate(
    {
        "rules": [
            {"id": "large", "stage": "pre", "when": "input.mean_radius > 25.0", "then": {"flag": "large"}}
        ]
    }
)

# Rules that flag every prediction, and a user's own training data for the tabular demo.
SEEN = Ruleset.model_validate(
    {"rules": [{"id": "seen", "stage": "post", "when": "output.label != ''", "then": {"flag": "seen"}}]}
)
OWN_DATA = b"mean_radius,label\n1.0,benign\n"


def _use(demo: Any) -> None:
    """Two versions, `champion` moved back to v1, rules saved, an object with metadata."""
    registry = wiring.registry()
    demos.register(registry, BUCKET, demo, "tester")
    demos.register(registry, BUCKET, demo, "tester")
    registry.set_alias(demo.name, "champion", 1, "tester")
    registry.put_ruleset(demo.name, RULES, "tester")
    aws.client("s3").put_object(
        Bucket=BUCKET,
        Key=FEEDBACK_KEY,
        Body=b'{"label": 1}\n',
        ContentType="application/x-ndjson",
        Metadata={"source": "test"},
    )


def test_a_restart_keeps_versions_aliases_rules_and_objects(tmp_path: Path, demos: dict[str, Any]) -> None:
    demo = demos["breast-cancer"]
    with running_stack(tmp_path, BUCKET, persist=True, save_interval=3600):
        _use(demo)
    saved = persistence.path_of(tmp_path / "state")
    assert saved.exists()
    assert not [p for p in saved.parent.iterdir() if p.name.endswith(".tmp")]

    with running_stack(tmp_path, BUCKET, persist=True, save_interval=3600) as local:
        assert local.restored
        registry = wiring.registry()
        summary = registry.get_model(demo.name)
        assert summary.latest_version == 2
        assert summary.aliases["champion"] == 1
        assert summary.rules_version == 1
        assert registry.get_ruleset(demo.name, 1).ruleset == RULES
        assert [v.version for v in registry.list_versions(demo.name)] == [1, 2]
        assert registry.resolve(demo.name, alias="champion").version == 1
        found = aws.client("s3").get_object(Bucket=BUCKET, Key=FEEDBACK_KEY)
        assert found["Body"].read() == b'{"label": 1}\n'
        assert found["ContentType"] == "application/x-ndjson"
        assert found["Metadata"] == {"source": "test"}
        # The model artifact itself came back: the registered version's object is readable.
        artifact = registry.get_version(demo.name, 2).artifact_uri.removeprefix(f"s3://{BUCKET}/")
        assert aws.client("s3").get_object(Bucket=BUCKET, Key=artifact)["Body"].read() == demo.model


def test_fresh_forgets_the_kept_state_and_starts_empty(tmp_path: Path, demos: dict[str, Any]) -> None:
    with running_stack(tmp_path, BUCKET, persist=True, save_interval=3600):
        _use(demos["breast-cancer"])
    with running_stack(tmp_path, BUCKET, persist=True, fresh=True, save_interval=3600) as local:
        assert not local.restored
        assert wiring.registry().list_models() == []
        assert aws.client("s3").list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
    # What the fresh stack saved at stop is its own empty state.
    with zipfile.ZipFile(persistence.path_of(tmp_path / "state")) as archive:
        assert archive.namelist() == [persistence.MANIFEST]


def test_without_persist_nothing_is_saved(tmp_path: Path, demos: dict[str, Any]) -> None:
    with running_stack(tmp_path, BUCKET):
        _use(demos["breast-cancer"])
    assert not persistence.path_of(tmp_path / "state").exists()


def test_a_save_that_finds_nothing_changed_writes_nothing(tmp_path: Path, demos: dict[str, Any]) -> None:
    state_dir = tmp_path / "kept"
    with running_stack(tmp_path, BUCKET):
        saver = persistence.Saver(state_dir, BUCKET, ["aimass-registry"], interval=3600)
        saver.save()
        first = persistence.path_of(state_dir).stat().st_ino  # a save renames a new file over the old
        saver.save()
        assert persistence.path_of(state_dir).stat().st_ino == first
        _use(demos["breast-cancer"])
        saver.save()
        assert persistence.path_of(state_dir).stat().st_ino != first


def _demo_state() -> dict[str, Any]:
    """Each model's versions (with their artifacts' sha256), aliases and rules version."""
    registry = wiring.registry()
    return {
        model.name: (
            [(v.version, v.sha256) for v in registry.list_versions(model.name)],
            model.aliases,
            model.rules_version,
        )
        for model in registry.list_models()
    }


def test_a_restart_leaves_the_demos_as_the_user_left_them(
    tmp_path: Path, state_dir: Path, demos: dict[str, Any]
) -> None:
    # The demos trained once for the session: the stacks here only register them
    gpu_network(state_dir)
    shutil.copytree(state_dir / "demo", tmp_path / "state" / "demo")
    with running_stack(tmp_path, BUCKET, persist=True, save_interval=3600) as local:
        names = local.register_demos()
        registry = wiring.registry()
        # The user moves an alias, adds rules, pushes a version and puts their own training data
        set_alias(registry, GPU_DEMO, "champion", 1, "tester")
        save_ruleset(registry, "breast-cancer", SEEN, "tester")
        digits = demos["digits"]
        register_version(registry, BUCKET, "digits", digits.model, "tester", digits.enrichment)
        aws.client("s3").put_object(Bucket=BUCKET, Key=TRAINING_DATA_KEY, Body=OWN_DATA)
        left = _demo_state()

    with running_stack(tmp_path, BUCKET, persist=True, save_interval=3600) as local:
        assert local.restored
        assert local.register_demos() == names
        # Not one demo registered again over what the user did
        assert _demo_state() == left
        assert [v for v, _ in left["digits"][0]] == [1, 2] and left["digits"][1] == {"champion": 1}
        assert left["breast-cancer"][2] == 1
        assert left[GPU_DEMO][1] == {"champion": 1, "fallback": 1}
        kept = aws.client("s3").get_object(Bucket=BUCKET, Key=TRAINING_DATA_KEY)["Body"].read()
        assert kept == OWN_DATA
        # ... and every demo still answers, with the user's rules, on the endpoint started again too
        with TestClient(create_app(), raise_server_exceptions=False) as client:
            rows = demos["breast-cancer"].holdout[:3].tolist()
            answer = client.post("/v1/models/breast-cancer:predict", json={"instances": rows})
            assert answer.status_code == 200, answer.text
            assert all(p["flags"] == ["seen"] for p in answer.json()["predictions"])
            images = {"instances": digits.holdout[:2].tolist()}
            for path in ("digits", "digits/versions/2", GPU_DEMO, f"{GPU_DEMO}/versions/2"):
                answer = client.post(f"/v1/models/{path}:predict", json=images)
                assert answer.status_code == 200, (path, answer.text)
                assert len(answer.json()["predictions"]) == 2
