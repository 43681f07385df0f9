"""Template YAML: source text kept, !public, AliECS's dropping rules, VarSpecs."""
from __future__ import annotations

import logging

import pytest

from engine.templates.yamlsource import (Public, TemplateYAMLError, load_yaml, plain, var_specs,
                                         variables)
from engine.workdir import WorkingDirectory
from tests.conftest import CORPUS

DOC = """
name: !public demo
description: !public "A demo"
defaults:
  port: 8500
  flag: false
  negative : -10
  empty: ""
  nothing:
  float: 1.50
  listed: [a, b]
  untagged:
    value: dropped
  shown: !public
    value: "yes"
    type: bool
    label: Shown
    widget: checkBox
    panel: General
    index: -2
    values: [yes, no]
    visibleif: $$x === "true"
    rows: 3
    custom: kept
"""


def test_scalars_keep_their_source_text_and_public_wraps(caplog: pytest.LogCaptureFixture) -> None:
    doc = load_yaml(DOC, "repo/workflows/demo.yaml")
    assert plain(doc["name"]) == "demo" and isinstance(doc["name"], Public)
    assert doc["name"].line == 2
    with caplog.at_level(logging.WARNING):
        values = variables(doc["defaults"], "repo/workflows/demo.yaml", "defaults")
    assert values == {"port": "8500", "flag": "false", "negative": "-10", "empty": "",
                      "nothing": "", "float": "1.50", "listed": '["a","b"]', "shown": "yes"}
    assert "defaults.untagged is a mapping without !public" in caplog.text


def test_var_specs_describe_public_variables() -> None:
    (spec,) = var_specs(load_yaml(DOC, "x")["defaults"])
    assert (spec.name, spec.default_value, spec.type, spec.label, spec.widget, spec.panel) == \
        ("shown", "yes", "bool", "Shown", "checkBox", "General")
    assert spec.allowed_values == ("yes", "no") and spec.index == -2 and spec.rows == 3
    assert spec.visible_if == '$$x === "true"' and spec.extra == {"custom": "kept"}


def test_bad_yaml_names_the_file_and_line() -> None:
    with pytest.raises(TemplateYAMLError, match=r"repo/workflows/bad.yaml:2:\d+: mapping values"):
        load_yaml("name: x\nfoo: bar: baz\n", "repo/workflows/bad.yaml")
    with pytest.raises(TemplateYAMLError, match="defaults must be a mapping"):
        variables(["a"], "f.yaml", "defaults")


def test_every_corpus_template_reads() -> None:
    files = sorted(CORPUS.glob("*/*.yaml"))
    assert len(files) == 22
    for path in files:
        doc = load_yaml(path.read_text(), str(path))
        assert plain(doc["name"]) == path.stem
    readout = load_yaml((CORPUS / "workflows" / "readout-dataflow.yaml").read_text(), "rd")
    assert len(var_specs(readout["defaults"])) == 109


def test_working_directory_comes_from_the_environment(tmp_path) -> None:
    home = WorkingDirectory.from_environment({"NUTSHELL_HOME": str(tmp_path / "h")}).ensure()
    assert home.root == tmp_path / "h" and home.repos.is_dir() and home.jit.is_dir()
    assert WorkingDirectory.from_environment({}).root.name == "nutshell"
