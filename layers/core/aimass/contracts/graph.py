"""A graph version's spec: an ensemble, a sequence or a switch over other versions (docs/composition.md).

Members are written `name@version` or `name@alias`; the registry resolves aliases to version numbers
when the graph version is created and keeps both (Graph.members), so a graph version never changes."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from aimass.contracts.common import ALIAS_PATTERN, MODEL_NAME_PATTERN, Contract

# `name@3` or `name@champion`: a model's version, by number or by alias.
MEMBER_PATTERN = rf"^{MODEL_NAME_PATTERN[1:-1]}@([1-9][0-9]{{0,8}}|{ALIAS_PATTERN[1:-1]})$"
STEP_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
MAX_MEMBERS = 10
Member = Annotated[str, Field(pattern=MEMBER_PATTERN, description="`name@version` or `name@alias`")]


def split_member(member: str) -> tuple[str, int | None, str | None]:
    """`name@3` → (name, 3, None); `name@champion` → (name, None, "champion")."""
    name, _, pin = member.rpartition("@")
    return (name, int(pin), None) if re.fullmatch(r"[0-9]+", pin) else (name, None, pin)


class Ensemble(Contract):
    """Every member runs on the same inputs; their answers are combined into one."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "kind": "ensemble",
                    "members": ["breast-cancer@champion", "breast-cancer@3"],
                    "weights": [2, 1],
                }
            ]
        },
    )

    kind: Literal["ensemble"]
    members: list[Member] = Field(min_length=2, max_length=MAX_MEMBERS)
    combine: Literal["mean", "vote"] = Field(
        default="mean",
        description="`mean`: classifiers, the weighted mean of the class probabilities (the label is the "
        "most probable class); regressors, the weighted mean of the values. `vote`: classifiers only, the "
        "weighted majority of the members' labels, a tie going to the first member (in order) among the "
        "tied; its probabilities are each class's share of the weighted votes",
    )
    weights: list[float] | None = Field(
        default=None, description="one per member, each above 0; unset: equal weights"
    )

    @field_validator("weights")
    @classmethod
    def _one_weight_per_member(cls, weights: list[float] | None, info: ValidationInfo) -> list[float] | None:
        members = info.data.get("members")
        if weights is not None:
            if members is not None and len(weights) != len(members):
                raise ValueError(f"{len(weights)} weights for {len(members)} members")
            if any(not w > 0 for w in weights):
                raise ValueError("each weight is above 0")
        return weights


class Step(Contract):
    """One step of a sequence: a member and where each of its inputs comes from."""

    model_config = ConfigDict(extra="forbid")

    model: Member
    name: str | None = Field(
        default=None,
        pattern=STEP_NAME_PATTERN,
        description="how later steps and the answer's `steps` name it; unset: the member's model name",
    )
    inputs: dict[str, str] = Field(
        default_factory=dict,
        description="the member's input name → its source: a graph input's name, or `<step>.<output>` (an "
        "earlier step's output). An input left out takes the previous step's output of the same name, "
        "else the graph input of the same name",
    )


class Sequence(Contract):
    """Each step runs on the graph's inputs and earlier steps' outputs; the graph answers with the last
    step's outputs. The graph's inputs are the first step's."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "kind": "sequence",
                    "steps": [
                        {"model": "scaler@1", "name": "scale"},
                        {"model": "classifier@champion", "inputs": {"input": "scale.variable"}},
                    ],
                }
            ]
        },
    )

    kind: Literal["sequence"]
    steps: list[Step] = Field(min_length=1, max_length=MAX_MEMBERS)


class Branch(Contract):
    model_config = ConfigDict(extra="forbid")

    when: str = Field(
        min_length=1,
        max_length=4000,
        description="a CEL expression over the instance's features (`input.<feature>`), as a `pre` rule's",
    )
    model: Member


class Switch(Contract):
    """Each instance goes to the first branch whose condition holds for it, else to the default."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "kind": "switch",
                    "branches": [{"when": "input.mean_radius > 15.0", "model": "breast-cancer@2"}],
                    "default": "breast-cancer@champion",
                }
            ]
        },
    )

    kind: Literal["switch"]
    branches: list[Branch] = Field(min_length=1, max_length=MAX_MEMBERS - 1)
    default: Member


GraphSpec = Annotated[Ensemble | Sequence | Switch, Field(discriminator="kind")]


class ResolvedMember(Contract):
    """A member as the spec gives it, and the version it was resolved to when the graph was created."""

    given: str = Field(description="as the spec wrote it: `name@version` or `name@alias`")
    name: str
    version: int


class Graph(Contract):
    """A graph version's graph: the spec as given, and every member resolved to its version."""

    spec: GraphSpec
    members: list[ResolvedMember]

    def member(self, given: str) -> ResolvedMember:
        return next(m for m in self.members if m.given == given)

    def step_names(self) -> list[str]:
        """What the answer's `steps` and errors call each member, in the spec's order."""
        spec = self.spec
        if isinstance(spec, Sequence):
            return [step.name or split_member(step.model)[0] for step in spec.steps]
        return [f"{m.name}@{m.version}" for m in map(self.member, self.given())]

    def given(self) -> list[str]:
        return given_members(self.spec)


def given_members(spec: GraphSpec) -> list[str]:
    """The members as the spec gives them, in its order (a switch's default last)."""
    if isinstance(spec, Ensemble):
        return list(spec.members)
    if isinstance(spec, Sequence):
        return [step.model for step in spec.steps]
    return [branch.model for branch in spec.branches] + [spec.default]


class ComposeRequest(Contract):
    """A graph version to register (POST /v1/models/{name}/versions:compose)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "graph": {"kind": "ensemble", "members": ["breast-cancer@champion", "breast-cancer@2"]},
                    "description": "mean of the champion and the retrained version",
                }
            ]
        },
    )

    graph: GraphSpec
    description: str | None = Field(default=None, max_length=2000)

    @field_validator("description")
    @classmethod
    def _not_blank(cls, description: str | None) -> str | None:
        return description.strip() or None if description is not None else None
