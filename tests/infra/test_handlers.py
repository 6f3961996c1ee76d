"""Every function the template names has a handler that imports and is callable, as in Lambda."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from aimass.local.notifications import template_function

from .conftest import REPO, layer_functions

pytestmark = pytest.mark.infra

# Runs in a fresh interpreter per function, so one handler's imports cannot help another's.
# Lambda puts the function's folder (/var/task) and the layers' python/ folders on sys.path: here
# the CoreLayer as built for a zip function, and the package source for the image function, which
# installs it whole. The interpreter runs without `site` (-S), so that the editable install of
# aimass cannot supply a module the layer lacks; the dependencies come from site-packages. It writes
# no bytecode (-B): a layer is read-only in Lambda, and the built one is shared by other tests.
IMPORT_HANDLER = """
import importlib.util, sys
code_dir, module_file, attribute, core, site_packages = sys.argv[1:6]
sys.path[:0] = [code_dir, core]
sys.path.append(site_packages)
spec = importlib.util.spec_from_file_location(module_file.rsplit("/", 1)[-1][:-3], module_file)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
handler = getattr(module, attribute, None)
if not callable(handler):
    sys.exit(f"{module_file} has no callable {attribute!r}")
"""


def function_environment(template: dict[str, Any], function: dict[str, Any]) -> dict[str, str]:
    """The function's environment variables, with references replaced by stand-ins."""
    variables = {
        **template["Globals"]["Function"]["Environment"]["Variables"],
        **function["Properties"].get("Environment", {}).get("Variables", {}),
    }
    parameters = template["Parameters"]
    env = {}
    for name, value in variables.items():
        if isinstance(value, dict) and value.get("Ref") in parameters:
            value = parameters[value["Ref"]].get("Default", "")
        elif isinstance(value, dict):
            value = f"aimass-test-{name.lower()}"  # a resource name only known once deployed
        env[name] = str(value)
    return env


def handler_location(logical_id: str) -> tuple[Path, Path, str]:
    """A function's code folder, handler module file and handler attribute."""
    # CodeUri and Handler, or an image function's Dockerfile folder and command
    found = template_function(logical_id, REPO / "template.yaml")
    module, _, attribute = found.handler.rpartition(".")
    return found.code_uri, found.code_uri / (module.replace(".", "/") + ".py"), attribute


def import_handler(
    template: dict[str, Any], logical_id: str, core_layer: Path, then: str = ""
) -> subprocess.CompletedProcess[str]:
    """Import a function's handler in a fresh interpreter with the function's template environment
    and its layers, then run `then` there."""
    code_dir, module_file, attribute = handler_location(logical_id)
    core = (
        core_layer / "python"
        if logical_id in layer_functions(template, "CoreLayer")
        else REPO / "layers" / "core"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(Path.home()),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
        **function_environment(template, template["Resources"][logical_id]),
    }
    return subprocess.run(
        [
            sys.executable,
            "-S",
            "-B",
            "-c",
            IMPORT_HANDLER + then,
            code_dir,
            module_file,
            attribute,
            core,
            sysconfig.get_path("purelib"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# Printed by every handler's interpreter once it has imported the handler: the web framework modules
# it loaded, and prometheus-client (the local server's /metrics only). FastAPI and what comes with it
# were most of the batch and pipeline functions' import time (bench/RESULTS.md).
FRAMEWORKS = {"fastapi", "starlette", "mangum", "prometheus_client"}
WEB_FRAMEWORKS = f'print(sorted({{m.split(".")[0] for m in sys.modules}} & {FRAMEWORKS!r}))'
# ... and on a second line whether it loaded matplotlib: the reports import it when they draw a plot,
# never on a handler's cold start (about a second, docs/quality.md).
PLOTTING = 'print(sorted({m.split(".")[0] for m in sys.modules} & {"matplotlib"}))'
# ... and on a third whether it loaded the X-Ray SDK's recorder (about 0.2 s), which the environment's
# POWERTOOLS_TRACE_DISABLED=true leaves out where the function's Tracer is aimass.tracing's.
XRAY = 'print("aws_xray_sdk.core" in sys.modules)'


@pytest.fixture(scope="module")
def imported(template: dict[str, Any], core_layer: Path) -> dict[str, subprocess.CompletedProcess[str] | str]:
    """Each function of the template: its handler imported in an interpreter of its own (several at a
    time), or why there was nothing to import."""
    functions = [k for k, v in template["Resources"].items() if v["Type"] == "AWS::Serverless::Function"]
    assert functions, "the template names no functions"
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        runs = {
            logical_id: pool.submit(
                import_handler, template, logical_id, core_layer, f"{WEB_FRAMEWORKS}; {PLOTTING}; {XRAY}"
            )
            for logical_id in functions
            if handler_location(logical_id)[1].is_file()
        }
    missing = {
        logical_id: f"{handler_location(logical_id)[1].relative_to(REPO)} does not exist"
        for logical_id in functions
        if logical_id not in runs
    }
    return {**missing, **{logical_id: run.result() for logical_id, run in runs.items()}}


def test_every_function_handler_imports_and_is_callable(
    imported: dict[str, subprocess.CompletedProcess[str] | str],
) -> None:
    problems = []

    for logical_id, result in imported.items():
        if isinstance(result, str):
            problems.append(f"{logical_id}: {result}")
        elif result.returncode != 0:
            module_file = handler_location(logical_id)[1]
            problems.append(
                f"{logical_id}: importing {module_file.relative_to(REPO)} failed:\n{result.stderr}"
            )

    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "logical_id",
    [
        "BatchFunction",
        "BatchStepsFunction",
        "PipelineFunction",
        "RolloutFunction",
        "MonitorFunction",
        "EventsPublisherFunction",
        "WebhooksFunction",
    ],
)
def test_a_function_that_serves_no_http_imports_no_web_framework(
    imported: dict[str, subprocess.CompletedProcess[str] | str], logical_id: str
) -> None:
    result = imported[logical_id]

    assert not isinstance(result, str), result
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "[]"


def test_no_function_imports_matplotlib_on_its_cold_start(
    imported: dict[str, subprocess.CompletedProcess[str] | str],
) -> None:
    loaded = {
        logical_id: result.stdout.splitlines()[1]
        for logical_id, result in imported.items()
        if not isinstance(result, str) and result.returncode == 0
    }

    assert loaded and set(loaded.values()) == {"[]"}, loaded


def test_the_registry_function_imports_fastapi_and_not_prometheus_client(
    imported: dict[str, subprocess.CompletedProcess[str] | str],
) -> None:
    # Its metrics are EMF lines for CloudWatch; /metrics is the local server's (docs/metrics.md).
    result = imported["RegistryFunction"]

    assert not isinstance(result, str), result
    assert result.returncode == 0, result.stderr
    assert "fastapi" in result.stdout and "prometheus_client" not in result.stdout


def test_the_online_function_imports_no_web_framework_until_a_request_needs_one(
    imported: dict[str, subprocess.CompletedProcess[str] | str],
) -> None:
    # Its prediction routes are answered without one (aimass.api.direct); FastAPI and Mangum are
    # imported by the first other request, or before a SnapStart snapshot.
    result = imported["OnlineFunction"]

    assert not isinstance(result, str), result
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "[]"


@pytest.mark.parametrize("logical_id", ["OnlineFunction", "RegistryFunction"])
def test_the_http_functions_do_not_import_the_xray_sdk_while_tracing_is_off(
    imported: dict[str, subprocess.CompletedProcess[str] | str], logical_id: str
) -> None:
    result = imported[logical_id]

    assert not isinstance(result, str), result
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[2] == "False"
