"""The tasks of statemachines/training_pipeline.asl.json: one function, the step named in the event.

Each task gets `{"step", "run" (the execution's name), "execution" (its ARN), "state"}`, where
`state` is the execution's state so far: the run's input (`model`, optional `parameters`) and each
earlier step's result under its own key (`ingest`, `validation`, `training`, `evaluation`,
`registered`). What a step returns is stored under its key. Only `register` and `release` write to
the registry, so a run that fails before them leaves it as it was.

An AWS error that may pass (throttling, a 5xx, a dropped connection) is raised as TransientFailure,
which the definition retries with backoff; anything else fails the run at once.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from aimass import artifacts, cards
from aimass import release as releases
from aimass.contracts.common import utcnow
from aimass.contracts.registry import ModelVersion, SignatureEnrichment
from aimass.gateways.transient import transient
from aimass.pipeline import data, evaluate, notices, runs, sagemaker, train
from aimass.pipeline.config import TrainingConfig
from aimass.pipeline.report import Answers, Evaluation, drift_from, publish
from aimass.quality.columns import Column
from aimass.registration import Reference, register_version, set_alias
from aimass.registry import Registry
from aimass.serving.backends.onnx import new_session
from aimass.serving.store import ModelStore

log = logging.getLogger(__name__)


class TransientFailure(Exception):
    """An AWS call failed in a way that may pass: the state machine retries the task."""


@dataclass(frozen=True)
class PipelineSettings:
    """What the pipeline's tasks take from the settings (aimass.config, built by aimass.wiring): the
    stack's bucket and its SageMaker training settings."""

    bucket: str
    sagemaker: sagemaker.SageMakerTraining


class Run:
    """One task's view of the execution: the model, its settings and what earlier steps found."""

    def __init__(
        self, event: dict[str, Any], registry: Registry, store: ModelStore, settings: PipelineSettings
    ) -> None:
        self.state: dict[str, Any] = event["state"]
        self.name: str = event["run"]
        self.execution: str = event.get("execution", event["run"])
        self.model: str = self.state["model"]
        self.registry, self.store, self.settings = registry, store, settings
        self.bucket = settings.bucket

    @cached_property
    def config(self) -> TrainingConfig:
        return TrainingConfig.model_validate(self.state["ingest"]["config"])

    @cached_property
    def serving(self) -> ModelVersion:
        return self.registry.get_version(self.model, self.state["ingest"]["serving_version"])

    @property
    def classification(self) -> bool:
        return self.state["ingest"]["task"] == "classification"

    def columns(self) -> list[Column]:
        return data.feature_columns(self.serving)

    def split(self) -> tuple[np.ndarray, ...]:
        snapshot = self.state["ingest"]["snapshot"]
        classes = self.serving.signature.class_labels if self.classification else None
        rows = data.rows(snapshot["uri"], snapshot["sha256"], self.columns(), self.config.label, classes)
        return data.split(rows, self.config, self.classification)


def ingest(run: Run) -> dict[str, Any]:
    serving = data.serving_version(run.registry, run.model)
    # Every run is listed with the model's runs, however it was started (API, schedule, drift).
    run.registry.record_run(run.model, runs.run_record(run.name, run.execution, utcnow(), run.state))
    config = runs.training_settings(data.stored_config(run.bucket, run.model), run.state.get("parameters"))
    columns = data.feature_columns(serving)
    signature = serving.signature
    task = "classification" if signature.class_labels or signature.task == "classification" else "regression"
    return {
        "config": config.model_dump(),
        "serving_version": serving.version,
        "task": task,
        "snapshot": data.ingest(run.bucket, run.model, run.name, [c.name for c in columns], config.label),
    }


def validate(run: Run) -> dict[str, Any]:
    from aimass.pipeline.validate import validate as gate

    serving = run.serving
    return gate(
        run.state["ingest"]["snapshot"],
        run.columns(),
        run.config,
        serving,
        run.store.checks_for(serving),
        run.store.statistics_for(serving),
    )


def fit(run: Run) -> dict[str, Any]:
    return train.train(run.bucket, run.model, run.name, run.config, run.split(), run.classification)


def measure(run: Run) -> dict[str, Any]:
    x_train, x_holdout, _, y_holdout = run.split()
    classes = len(run.serving.signature.class_labels or [])
    candidate = run.state["training"]["candidate"]
    session = new_session(artifacts.verified(candidate["uri"], candidate["sha256"]))
    found = evaluate.predictions(session, x_holdout, run.classification)
    candidate_metrics = evaluate.metrics(y_holdout, found, run.classification, classes)
    champion = data.champion(run.registry, run.model)
    champion_metrics = None
    champion_answers = None
    if champion is not None:
        loaded = run.store.load(run.model, champion.version)
        answered = evaluate.predictions_of(
            loaded.run, loaded.version.signature.inputs[0].name, x_holdout, run.classification
        )
        champion_metrics = evaluate.metrics(y_holdout, answered, run.classification, classes)
        champion_answers = Answers(f"champion v{champion.version}", answered, champion_metrics)
    task = run.state["ingest"]["task"]
    numbers = evaluate.gate(run.config, task, candidate_metrics, champion_metrics)
    # The report draws drift with the scores Validate computed, against the same baseline.
    validation = run.state.get("validation") or {}
    report = publish(
        run.bucket,
        Evaluation(
            model=run.model,
            run=run.name,
            execution=run.execution,
            task=task,
            classes=run.serving.signature.class_labels,
            y_true=y_holdout,
            candidate=Answers("candidate", found, candidate_metrics),
            champion=champion_answers,
            gate=numbers,
            snapshot=run.state["ingest"]["snapshot"],
            thresholds=run.config.thresholds,
            release=run.config.release,
            drift=drift_from(
                validation.get("drift"),
                run.store.statistics_for(run.serving),
                [c.name for c in run.columns()],
                np.concatenate([x_train, x_holdout]),
            ),
            baseline_version=validation.get("baseline_of"),
        ),
    )
    return {
        "holdout_rows": len(y_holdout),
        "candidate": candidate_metrics,
        "champion": champion_metrics,
        "champion_version": champion.version if champion else None,
        **numbers,
        "report": report,
    }


def register(run: Run) -> dict[str, Any]:
    serving = run.serving
    candidate = run.state["training"]["candidate"]
    x_train = run.split()[0]
    reference = io.StringIO()
    writer = csv.writer(reference)
    writer.writerow([c.name for c in run.columns()])
    writer.writerows(x_train.tolist())
    snapshot = run.state["ingest"]["snapshot"]
    evaluation = run.state["evaluation"]
    record = register_version(
        run.registry,
        run.bucket,
        run.model,
        artifacts.verified(candidate["uri"], candidate["sha256"]),
        f"pipeline/{run.name}",
        SignatureEnrichment(
            features=list(serving.signature.features or []),
            class_labels=serving.signature.class_labels,
            description=f"{run.config.estimator} retrained by the pipeline (run {run.name}) on "
            f"{snapshot['rows']} rows, snapshot sha256 {snapshot['sha256'][:12]}",
        ),
        metrics=evaluation["candidate"],
        reference=Reference(
            reference.getvalue().encode(), "training.csv", f"training split of {snapshot['uri']}"
        ),
        lineage={
            "dataset": {"uri": snapshot["uri"], "sha256": snapshot["sha256"], "files": snapshot["files"]},
            "execution": run.execution,
            "trigger": run.state.get("trigger", "manual"),  # schedule, drift, api (docs/pipeline.md)
            "parameters": run.state["ingest"]["config"],
            "trained": {k: v for k, v in run.state["training"].items() if k != "candidate"},
            "compared_with": {"version": evaluation["champion_version"], "metrics": evaluation["champion"]},
            # What the model card shows of the run (aimass.cards): the version retrained, the evaluation.
            "parent_version": serving.version,
            "evaluation": {
                "report": (evaluation.get("report") or {}).get("uri"),
                "holdout_rows": evaluation["holdout_rows"],
                "gate": evaluation.get("reason"),
            },
        },
    )
    registered = {"version": record.version, "artifact_uri": record.artifact_uri}
    try:
        inherited = cards.inherit_fields(
            run.registry, run.model, serving.version, record.version, record.created_by
        )
    except Exception as error:  # whatever the registry raises: the version is in, and must stay one
        # A retry of this step would register the candidate a second time; the card's fields can be
        # set by hand (`aimass models card-set`), so the run goes on and its result says why.
        log.warning("v%s of %s: its card fields were not copied: %s", record.version, run.model, error)
        return {**registered, "card_fields": None, "card_fields_error": str(error)}
    return {**registered, "card_fields": inherited}


def release(run: Run) -> dict[str, Any]:
    """`champion`: the version is released through the model's release policy (aimass.release: a
    rollout, an approval first, or an alias move); `challenger`: the alias moves at once."""
    alias = run.config.release
    version = run.state["registered"]["version"]
    actor = f"pipeline/{run.name}"
    if alias != "champion":
        set_alias(run.registry, run.model, alias, version, actor)
        return {"alias": alias, "version": version, "release": None}
    report = (run.state["evaluation"].get("report") or {}).get("uri")
    origin = {"pipeline": run.name, "execution": run.execution, "report": report}
    released = releases.release(run.registry, run.model, version, actor, origin=origin)
    return {"alias": alias, "version": version, "release": runs.release_link(released)}


def describe_failure(run: Run) -> dict[str, Any]:
    return notices.failure_notice(run.name, run.state)


STEPS: dict[str, Callable[[Run], dict[str, Any]]] = {
    "ingest": ingest,
    "validate": sagemaker.choosing_backend(validate),  # + where to train: the ChooseBackend Choice
    "train": fit,
    "prepare_training": sagemaker.prepare,  # the SageMaker branch (aimass.pipeline.sagemaker)
    "collect_model": sagemaker.collect,
    "evaluate": measure,
    "register": register,
    "release": release,
    "describe_failure": describe_failure,  # the failure path's notice (aimass.pipeline.notices)
}


def step(
    event: dict[str, Any], registry: Registry, store: ModelStore, settings: PipelineSettings
) -> dict[str, Any]:
    name = event.get("step")
    if name not in STEPS:
        raise ValueError(f"unknown pipeline step {name!r}: expected one of {', '.join(STEPS)}")
    try:
        return STEPS[name](Run(event, registry, store, settings))
    except Exception as error:
        if transient(error):
            raise TransientFailure(f"{name}: {error}") from error
        raise
