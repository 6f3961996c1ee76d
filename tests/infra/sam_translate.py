"""Expand template.yaml with the SAM translator, offline, as CloudFormation would at deploy time.

Runs with the template tools' interpreter (.venv-tools/bin/python), which has aws-sam-cli and
aws-sam-translator; the app venv has neither. tests/infra uses it to check what SAM generates
(the HTTP API's OpenAPI body under each AuthMode, the online function's versions).

Reads a JSON list of cases on stdin and writes a JSON list of translated templates, one per case,
so that several cases cost one interpreter start:

    echo '[{"parameters": {"AuthMode": "jwt", "JwtIssuer": "https://id.example.com"}}]' \
        | .venv-tools/bin/python tests/infra/sam_translate.py template.yaml

A case may also carry "artifact": a name standing for one build of the code. The translator only
accepts S3 locations for code, so every CodeUri/ContentUri becomes s3://artifacts/<artifact>/<id>.zip
(and an image function gets an ECR ImageUri): two cases with different artifacts look like two
builds of different code. A state machine's local
DefinitionUri becomes its Definition, read from the file (what `sam package` uploads), so that the
generated definition and its substitutions can be checked.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import boto3
from samcli.yamlhelper import yaml_parse
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

_CODE_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
}


def translate(
    template: dict[str, Any], parameters: dict[str, str], artifact: str = "build", root: Path = Path(".")
) -> dict[str, Any]:
    template = copy.deepcopy(template)
    for logical_id, resource in template.get("Resources", {}).items():
        properties = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Serverless::StateMachine" and "DefinitionUri" in properties:
            uri = properties.pop("DefinitionUri")
            properties["Definition"] = yaml_parse((root / uri).read_text())
        code_property = _CODE_PROPERTIES.get(resource.get("Type"))
        if properties.get("PackageType") == "Image":
            # What `sam build` + `sam deploy` set: the image pushed to the stack's ECR repository
            properties["ImageUri"] = (
                f"123456789012.dkr.ecr.us-east-1.amazonaws.com/aimass:{artifact}-{logical_id}"
            )
        elif code_property:
            resource.setdefault("Properties", {})[code_property] = (
                f"s3://artifacts/{artifact}/{logical_id}.zip"
            )
    # A session only to name the region: nothing here calls AWS or needs credentials.
    session = boto3.Session(region_name="us-east-1")
    translator = Translator(managed_policy_map=None, sam_parser=Parser(), boto_session=session)
    return translator.translate(template, parameter_values=parameters, get_managed_policy_map=dict)


def main(argv: list[str]) -> None:
    (template_path,) = argv
    template = yaml_parse(Path(template_path).read_text())
    cases = json.load(sys.stdin)
    results = [
        translate(
            template, case.get("parameters", {}), case.get("artifact", "build"), Path(template_path).parent
        )
        for case in cases
    ]
    json.dump(results, sys.stdout, default=str)


if __name__ == "__main__":
    main(sys.argv[1:])
