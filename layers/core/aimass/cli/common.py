"""What every command group shares: the consoles, the exit codes and errors, the API call, the
options naming the API and the AWS, and `--json`."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

# Printed commands must stay copy-pasteable: never wrap them at the terminal width.
console = Console(soft_wrap=True)
# An error is one line, whatever the width, so that scripts and logs can grep it.
err = Console(stderr=True, soft_wrap=True)

# The exit codes scripts can rely on (docs/cli.md). 2 is click's own for a usage error.
FAILED = 1
USAGE = 2
UNREACHABLE = 3


def print_error(message: str) -> None:
    """`message` as a red line on stderr, escaped: error messages quote regexes and paths whose
    brackets rich would otherwise take for markup (and drop)."""
    err.print(f"[red]{escape(message)}[/red]")


def fail(message: str, code: int = FAILED) -> typer.Exit:
    """Print `message` as one error line; the exit to raise."""
    print_error(message)
    return typer.Exit(code)


def unreachable(error: Exception) -> str | None:
    """What could not be reached, in words, when `error` says the API or the AWS did not answer."""
    import httpx
    from botocore.exceptions import ConnectionError as AwsConnectionError
    from botocore.exceptions import HTTPClientError

    if isinstance(error, httpx.TransportError):
        try:
            where = f"{error.request.method} {error.request.url}"
        except RuntimeError:  # an error raised outside a request has none
            where = "the API"
        return f"cannot reach {where}: {error}"
    if isinstance(error, AwsConnectionError | HTTPClientError):
        return f"cannot reach the AWS: {error}"
    return None


def _unreachable_in_chain(error: BaseException | None) -> str | None:
    """unreachable() of `error` or of an error it was raised from (boto3's S3UploadFailedError
    wraps the connection error it met)."""
    while error is not None:
        if isinstance(error, Exception) and (problem := unreachable(error)):
            return problem
        error = error.__cause__ or error.__context__
    return None


class AimassGroup(TyperGroup):
    """The root command: an API or AWS that does not answer, in any command, is one line on stderr
    and exit 3, not a traceback."""

    # ctx is typer's vendored click Context, which typer does not export under a public name
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as error:
            problem = _unreachable_in_chain(error)
            if problem is None:
                raise
            raise fail(problem, UNREACHABLE) from error


Endpoint = Annotated[str, typer.Option(envvar="AIMASS_ENDPOINT", help="aimass API to talk to")]
ApiKey = Annotated[str | None, typer.Option(envvar="AIMASS_API_KEY", help="x-api-key header value")]
DEFAULT_ENDPOINT = "http://127.0.0.1:8000"


def call(
    method: str, endpoint: str, path: str, api_key: str | None, accept: str | None = None, **kwargs: Any
) -> Any:
    """The API's JSON answer (with `accept`, a media type other than JSON: the answer's text). An
    error answer is printed with its details (exit 1); an API that cannot be reached raises httpx's
    error, which AimassGroup turns into exit 3.

    The registry's writes (aimass.api.scopes) send AIMASS_ADMIN_KEY instead of the API key when it
    is set: the local server's admin key."""
    import httpx

    from aimass.api.scopes import needs_admin

    key = (os.environ.get("AIMASS_ADMIN_KEY") or api_key) if needs_admin(method, path) else api_key
    headers = {"x-api-key": key} if key else {}
    if accept:
        headers["accept"] = accept
    response = httpx.request(method, endpoint.rstrip("/") + path, headers=headers, timeout=60, **kwargs)
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    if response.status_code >= 400:
        problem = body.get("error", {})
        exit_ = fail(
            f"{response.status_code} {problem.get('code', '')}: {problem.get('message', response.text)}"
        )
        print_details(problem.get("details", []))
        raise exit_
    return response.text if accept else body


def print_details(details: list[dict[str, Any]]) -> None:
    """An aimass error's field-level details, one `loc: message` line each."""
    for detail in details:
        err.print(escape(f"  {'.'.join(map(str, detail.get('loc', [])))}: {detail.get('message')}"))


def aws_endpoint_option(*other_names: str) -> Any:
    """--aws-endpoint, the one name of the AWS a command works on (`other_names`: older names kept)."""
    return typer.Option(
        "--aws-endpoint",
        *other_names,
        envvar="AIMASS_AWS_ENDPOINT_URL",
        show_default=False,
        help="the AWS to work on: '' for AWS itself (your credentials); default: the embedded AWS of "
        "`aimass serve`, http://127.0.0.1:$AIMASS_AWS_PORT (5000)",
    )


AwsEndpoint = Annotated[str | None, aws_endpoint_option()]
Region = Annotated[str, typer.Option(envvar="AWS_DEFAULT_REGION")]


def aws_endpoint_url(option: str | None) -> str:
    """The AWS endpoint a command uses: --aws-endpoint or AIMASS_AWS_ENDPOINT_URL ('' for AWS
    itself), else the embedded AWS on AIMASS_AWS_PORT, the variable `aimass serve` takes its port
    from, so one setting moves both."""
    if option is not None:
        return option
    return f"http://127.0.0.1:{os.environ.get('AIMASS_AWS_PORT') or 5000}"


def use_aws(option: str | None, region: str, **settings: str) -> None:
    """Point this process's aimass settings at an AWS: the local stack's (fake credentials), or AWS."""
    endpoint = aws_endpoint_url(option)
    os.environ.update({"AWS_DEFAULT_REGION": region, **settings})
    if endpoint:
        os.environ["AIMASS_AWS_ENDPOINT_URL"] = endpoint
        if "AWS_ACCESS_KEY_ID" not in os.environ:
            from aimass.local.stack import FAKE_CREDENTIALS

            os.environ.update(FAKE_CREDENTIALS)
    # Settings and clients made before (by an earlier command in this process) are of the old AWS
    from aimass import aws
    from aimass.config import settings as aimass_settings

    aimass_settings.cache_clear()
    aws.reset()


def comma_list(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def request_body_text(file: Path | None) -> str:
    """A request body's text from --file FILE, or from stdin for '-' or no --file (predict, explain)."""
    if file is None or str(file) == "-":
        return sys.stdin.read()
    if not file.is_file():
        raise fail(f"--file {file}: no such file", USAGE)
    return file.read_text()


def instances_body(text: str) -> Any:
    """A V1 request body from its JSON text: a list is the instances (predict, explain)."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError as error:
        raise fail(f"the request body is not valid JSON: {error}", USAGE) from error
    return {"instances": body} if isinstance(body, list) else body


def version_path(name: str, version: int | None, label: str | None) -> str:
    """Model NAME's V1 path: a version by its number, else by its label (alias), else the default one."""
    return f"/v1/models/{name}" + (f"/versions/{version}" if version else f"/labels/{label}" if label else "")


def json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise fail(f"{path} is not valid JSON: {error}", USAGE) from error


AsJson = Annotated[
    bool,
    typer.Option("--json", help="print the result as JSON on stdout, for scripts (progress goes to stderr)"),
]


def show_json(data: Any) -> None:
    """A command's result for --json: the API's answer as it came, or a report (dataclasses as
    objects, times as ISO text). print, not rich: no markup, highlighting or wrapping to get in jq's way."""
    if is_dataclass(data) and not isinstance(data, type):
        data = asdict(data)
    print(json.dumps(data, indent=2, default=str))
