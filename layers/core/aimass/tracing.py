"""The functions' Powertools Tracer, with the X-Ray SDK imported only when tracing is on.

Powertools' `Tracer()` imports the X-Ray SDK (and botocore's docs machinery with it) even when tracing
is disabled: about 0.2 s of every function's import (bench/RESULTS.md, "Cold start"). When tracing is
off by Powertools' own rule (POWERTOOLS_TRACE_DISABLED, or not running in Lambda, or in SAM local), the
Tracer gets a provider that records nothing instead, so its decorators cost a context manager a call
and the SDK is never imported. With tracing on (the template's `Tracing: Active`) it is the plain
Tracer."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Generator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.shared import constants
from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment


class Untraced(BaseSegment):
    """A segment that records nothing."""

    def close(self, end_time: int | None = None) -> None:
        pass

    def add_subsegment(self, subsegment: Any) -> None:
        pass

    def remove_subsegment(self, subsegment: Any) -> None:
        pass

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        pass


UNTRACED = Untraced()


class NoTracing(BaseProvider):
    """Powertools' provider interface, recording nothing: the Tracer's provider while tracing is off."""

    @contextmanager
    def in_subsegment(self, name: Any = None, **kwargs: Any) -> Generator[BaseSegment, None, None]:
        yield UNTRACED

    @asynccontextmanager
    async def in_subsegment_async(self, name: Any = None, **kwargs: Any) -> AsyncGenerator[BaseSegment, None]:
        yield UNTRACED

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def patch(self, modules: Sequence[str]) -> None:
        pass

    def patch_all(self) -> None:
        pass


def tracing_on() -> bool:
    """Powertools' rule (Tracer._is_tracer_disabled): off when POWERTOOLS_TRACE_DISABLED is true, outside
    Lambda, and under SAM local or Chalice's local mode."""
    if resolve_truthy_env_var_choice(env=os.getenv(constants.TRACER_DISABLED_ENV, "false")):
        return False
    in_lambda = os.getenv(constants.LAMBDA_TASK_ROOT_ENV)
    emulated = os.getenv(constants.SAM_LOCAL_ENV) or os.getenv(constants.CHALICE_LOCAL_ENV)
    return bool(in_lambda) and not emulated


def function_tracer() -> Tracer:
    """The function's Tracer; called once, at the function's import."""
    if tracing_on():
        return Tracer()
    return Tracer(disabled=True, provider=NoTracing())
