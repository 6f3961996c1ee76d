"""Business rules: a model's ruleset (CEL), what fired on an instance, and a dry run's request and answer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from aimass.contracts.common import Contract, ModelRef, utcnow

# What a ruleset's conditions may add up to. Compiling and running rules costs about linearly in their
# text: 775,400 characters (200 rules of 3,900) took 2.2-6.7 s to compile and 0.7-1.4 s to run on a
# 100-instance request; at 40,000 a save or the first predict after it compiles in under 0.1 s and a
# 100-instance request's rules run in about 30 ms (bench/RESULTS.md, "Rules by size").
MAX_CONDITION_CHARS = 40_000

RULE_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"


class RuleAction(Contract):
    """Exactly one of: set output fields, add a flag with a reason, or reject the request."""

    model_config = ConfigDict(extra="forbid")

    set: dict[str, Any] | None = None
    flag: str | None = Field(default=None, min_length=1, max_length=500)
    reject: str | None = Field(default=None, min_length=1, max_length=500)

    @model_validator(mode="after")
    def _exactly_one(self) -> RuleAction:
        given = [k for k in ("set", "flag", "reject") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of set, flag, reject (got {', '.join(given) or 'none'})")
        return self

    @property
    def kind(self) -> Literal["set", "flag", "reject"]:
        return "set" if self.set is not None else "flag" if self.flag is not None else "reject"


class Rule(Contract):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=RULE_ID_PATTERN)
    description: str | None = Field(default=None, max_length=2000)
    stage: Literal["pre", "post"] = "post"
    when: str = Field(min_length=1, max_length=4000, description="a CEL expression that gives a bool")
    then: RuleAction


class Ruleset(Contract):
    """A model's business rules, in order; `first` stops each stage at its first match."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "hit_policy": "first",
                    "rules": [
                        {
                            "id": "large-tumour",
                            "stage": "pre",
                            "when": "input.mean_radius > 25.0",
                            "then": {"reject": "outside the population the model was trained on"},
                        },
                        {
                            "id": "refer-uncertain",
                            "stage": "post",
                            "when": "output.probabilities['malignant'] > 0.3 && output.label == 'benign'",
                            "then": {"set": {"decision": "refer"}},
                        },
                    ],
                }
            ]
        },
    )

    hit_policy: Literal["first", "all"] = "first"
    rules: list[Rule] = Field(
        default_factory=list,
        max_length=200,
        description=f"at most 200 rules, their conditions {MAX_CONDITION_CHARS:,} characters in all",
    )

    @field_validator("rules")
    @classmethod
    def _bounded_conditions(cls, rules: list[Rule]) -> list[Rule]:
        total = sum(len(r.when) for r in rules)
        if total > MAX_CONDITION_CHARS:
            raise ValueError(
                f"the rules' conditions have {total:,} characters in all; at most {MAX_CONDITION_CHARS:,}"
            )
        return rules

    @model_validator(mode="after")
    def _unique_ids(self) -> Ruleset:
        ids = [r.id for r in self.rules]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"rule ids must be unique: {', '.join(duplicates)}")
        return self


class FiredRule(Contract):
    """A rule that matched an instance, and what it did."""

    id: str
    stage: Literal["pre", "post"]
    action: Literal["set", "flag", "reject"]
    set: dict[str, Any] | None = None
    flag: str | None = None
    reject: str | None = None


class RulesEvaluationRequest(Contract):
    """Which rules fire on these instances. Give the predictions you already have to skip the model;
    give a ruleset to try it before saving."""

    model_config = ConfigDict(extra="forbid")

    instances: list[Any] = Field(min_length=1)
    predictions: list[Any] | None = None
    ruleset: Ruleset | None = None


class RuleEvaluation(Contract):
    rules: list[FiredRule]
    rejected: bool
    prediction: Any


class RulesEvaluationResponse(Contract):
    results: list[RuleEvaluation]
    rules_version: int | None
    model: ModelRef


class RulesetVersion(Contract):
    name: str
    version: int
    ruleset: Ruleset
    created_at: str = Field(default_factory=utcnow)
    created_by: str = "anonymous"
