"""Reading template.yaml (aimass.local.template): libyaml's parser, with CloudFormation's short-form
tags, reads the same document as PyYAML's own, once per file."""

from __future__ import annotations

from pathlib import Path

import yaml

from aimass.local import template


class PurePythonCfnLoader(yaml.SafeLoader):
    pass


PurePythonCfnLoader.add_multi_constructor("!", template._tag)


def test_the_template_reads_as_pyyamls_own_parser_reads_it() -> None:
    path = template.template_path()

    expected = yaml.load(path.read_text(), Loader=PurePythonCfnLoader)

    assert template.load() == expected
    layers = template.load()["Resources"]["OnlineFunction"]["Properties"]["Layers"]
    assert {"Ref": "CoreLayer"} in layers and {"Ref": "RuntimeLayer"} in layers


def test_short_form_tags_read_as_their_long_forms(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(
        "A: !Ref Bucket\nB: !Sub 'arn:${AWS::Partition}'\nC: !GetAtt Role.Arn\nD: !If [Cond, 1, 2]\n"
        "E: !Condition IsProd\nF: !Join ['', [a, !Ref B]]\n"
    )

    assert template.load(path) == {
        "A": {"Ref": "Bucket"},
        "B": {"Fn::Sub": "arn:${AWS::Partition}"},
        "C": {"Fn::GetAtt": ["Role", "Arn"]},
        "D": {"Fn::If": ["Cond", 1, 2]},
        "E": {"Condition": "IsProd"},
        "F": {"Fn::Join": ["", ["a", {"Ref": "B"}]]},
    }


def test_a_file_is_read_once_whether_named_or_taken_from_the_environment() -> None:
    template.parsed.cache_clear()

    assert template.load() is template.load(template.template_path())
    assert template.parsed.cache_info().misses == 1
