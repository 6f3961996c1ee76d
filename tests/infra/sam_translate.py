"""Expand template.yaml with the SAM translator, offline, and print the CloudFormation as JSON.

Runs with the template tools' interpreter (.venv-tools/bin/python), which has aws-sam-cli and
aws-sam-translator; the app venv does not. Used by tests/infra to check what SAM generates, for
example the HTTP API's OpenAPI body under each AuthMode.

    .venv-tools/bin/python tests/infra/sam_translate.py template.yaml AuthMode=jwt JwtIssuer=https://x
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import boto3
from samcli.yamlhelper import yaml_parse
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

# The translator only accepts S3 locations for code; the value does not matter for the checks.
_CODE_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
}


def translate(template_path: Path, parameters: dict[str, str]) -> dict:
    template = yaml_parse(template_path.read_text())
    for resource in template.get("Resources", {}).values():
        code_property = _CODE_PROPERTIES.get(resource.get("Type"))
        if code_property:
            resource.setdefault("Properties", {})[code_property] = "s3://bucket/key.zip"
    # A session only to name the region: nothing here calls AWS or needs credentials.
    session = boto3.Session(region_name="us-east-1")
    translator = Translator(managed_policy_map=None, sam_parser=Parser(), boto_session=session)
    return translator.translate(template, parameter_values=parameters, get_managed_policy_map=dict)


def main(argv: list[str]) -> None:
    template_path, *assignments = argv
    parameters = dict(assignment.split("=", 1) for assignment in assignments)
    json.dump(translate(Path(template_path), parameters), sys.stdout, indent=1, default=str)


if __name__ == "__main__":
    main(sys.argv[1:])
