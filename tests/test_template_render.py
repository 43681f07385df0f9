"""Rendering template strings: fasttemplate splitting, Go-style output, error messages that
name repo/file/role/field/expression, strict names, the sandbox, caching and scopes."""
from __future__ import annotations

import threading
from collections import ChainMap
from typing import Any, Mapping

import pytest

from engine.templates.render import (
    Namespace,
    Renderer,
    TemplateError,
    Where,
    compile_expression,
    go_json,
    go_string,
    split_template,
)

WHERE = Where(repo="github.com/AliceO2Group/ControlWorkflows",
              file="workflows/readout-dataflow.yaml", role_path="readout-dataflow.host-flp1",
              field="enabled")


def render(text: str, **stack: Any) -> str:
    return Renderer().render(text, stack, WHERE)


# --- Go-style output ---------------------------------------------------------------------

@pytest.mark.parametrize(("value", "text"), [
    ("text", "text"), (True, "true"), (False, "false"), (None, ""),
    (0, "0"), (-12, "-12"), (2**70, "1180591620717411303424"),
    (2.5, "2.5"), (1.0, "1"), (-0.0, "-0"), (123456.0, "123456"), (1e6, "1e+06"),
    (1234567.0, "1.234567e+06"), (0.0001, "0.0001"), (0.00001, "1e-05"), (1e21, "1e+21"),
    (0.1 + 0.2, "0.30000000000000004"), (float("inf"), "+Inf"), (float("nan"), "NaN"),
    (["ITS", "TPC"], '["ITS","TPC"]'), ([], "[]"), (("a",), '["a"]'),
    ([1.0, 2.5, None, True], "[1,2.5,null,true]"),
    ({"b": 1, "a": [{"z": "<&>"}]}, '{"a":[{"z":"\\u003c\\u0026\\u003e"}],"b":1}'),
])
def test_go_string(value: Any, text: str) -> None:
    assert go_string(value) == text


def test_go_json_floats_and_strings_as_go_writes_them() -> None:
    assert go_json([1e21, 1e20, 1e-7, 1.5e-6, 100.0]) == "[1e+21,100000000000000000000,1e-7,0.0000015,100]"
    assert go_json(["é", "a\"b\\c\n", "\u2028"]) == '["é","a\\"b\\\\c\\n","\\u2028"]'
    with pytest.raises(ValueError, match="unsupported value: NaN"):
        go_json([float("nan")])


# --- splitting and splicing -------------------------------------------------------------------

def test_text_without_tags_is_returned_as_is() -> None:
    text = "no tags here } { }} "
    assert Renderer().render(text, {}, WHERE) is text


def test_tags_are_evaluated_and_spliced() -> None:
    assert render("host-{{ it }}", it="flp1") == "host-flp1"
    assert render("{{a}}{{b}}-{{ a + b }}", a="x", b="y") == "xy-xy"
    assert render("{{ enabled == 'true' }}", enabled="true") == "true"
    assert render("{{ n > 1 }} and {{ l }}", n=0, l=["a"]) == 'false and ["a"]'
    assert render("{{ x }}", x=None) == ""
    assert render("a }} b {{ 'c' }}") == "a }} b c"


def test_the_first_closing_delimiter_ends_a_tag() -> None:
    # fasttemplate does not know strings: "}}" inside quotes still closes the tag
    with pytest.raises(TemplateError) as caught:
        render("{{ '}}' }}")
    assert caught.value.expression == " '"
    assert caught.value.reason.startswith("syntax error: unterminated string literal")


def test_unclosed_tag_is_an_error() -> None:
    with pytest.raises(TemplateError) as caught:
        render("echo {{ it ")
    assert str(caught.value) == f"{WHERE}: {{{{ it : cannot find the closing }}}} of this tag"
    assert caught.value.expression == " it "


def test_split_template_gives_literals_around_compiled_tags() -> None:
    literals, tags = split_template("a{{ x }}b{{y}}")
    assert literals == ("a", "b", "")
    assert [t.source for t in tags] == [" x ", "y"]


# --- errors ----------------------------------------------------------------------------------

def test_unknown_name_error_names_repo_file_role_field_and_expression() -> None:
    with pytest.raises(TemplateError) as caught:
        render("--flag={{ dd_enabled == 'true' && nope }}", dd_enabled="true")
    error = caught.value
    assert str(error) == (
        "repo github.com/AliceO2Group/ControlWorkflows, file workflows/readout-dataflow.yaml, "
        "role readout-dataflow.host-flp1, field enabled: "
        "{{ dd_enabled == 'true' && nope }}: unknown name nope")
    assert (error.where, error.expression, error.reason) == (
        WHERE, " dd_enabled == 'true' && nope ", "unknown name nope")


def test_unknown_names_are_errors_even_in_a_branch_not_taken() -> None:
    # expr-lang checks names when compiling, so AliECS fails here too
    with pytest.raises(TemplateError, match="unknown name missing_var"):
        render("{{ a == 'x' ? 'yes' : missing_var }}", a="x")
    with pytest.raises(TemplateError, match="unknown name missing_var"):
        render("{{ false && missing_var == 'x' }}")


def test_where_leaves_out_what_is_not_known() -> None:
    with pytest.raises(TemplateError) as caught:
        Renderer().render("{{ x }}", {}, Where(file="tasks/readout.yaml"))
    assert str(caught.value) == "file tasks/readout.yaml: {{ x }}: unknown name x"
    with pytest.raises(TemplateError) as caught:
        Renderer().render("{{ x }}", {}, Where())
    assert str(caught.value) == "template: {{ x }}: unknown name x"


def test_syntax_errors_say_where_in_the_expression() -> None:
    with pytest.raises(TemplateError) as caught:
        render("{{ a == }}", a="x")
    assert caught.value.reason == "syntax error: unexpected end of expression at column 7"
    assert str(caught.value).startswith(f"{WHERE}: {{{{ a == }}}}: ")


def test_errors_raised_by_helpers_are_wrapped_with_the_context() -> None:
    class Broken(Namespace):
        def Fail(self, text: str) -> str:  # noqa: N802
            raise ValueError(f"cannot handle {text}")

    renderer = Renderer(lambda stack: {"broken": Broken()})
    with pytest.raises(TemplateError) as caught:
        renderer.render("x={{ broken.Fail(it) }}", {"it": "flp1"}, WHERE)
    assert str(caught.value) == f"{WHERE}: {{{{ broken.Fail(it) }}}}: cannot handle flp1"
    assert isinstance(caught.value.__cause__, ValueError)


def test_missing_attribute_or_item_is_an_error() -> None:
    class Role(Namespace):
        Path = "root.flp1"

    renderer = Renderer(lambda stack: {"Parent": lambda: Role()})
    assert renderer.render("{{ Parent().Path }}", {}, WHERE) == "root.flp1"
    with pytest.raises(TemplateError, match="has no attribute 'Pth'"):
        renderer.render("{{ Parent().Pth }}", {}, WHERE)
    with pytest.raises(TemplateError, match="list object has no element 5"):
        render("{{ l[5] }}", l=["a"])


def test_nested_template_errors_keep_both_contexts() -> None:
    inner = Renderer()

    class Config(Namespace):
        def Get(self, text: str) -> str:  # noqa: N802
            return inner.render(text, {}, Where(file="o2/components/x/ANY/any/y"))

    renderer = Renderer(lambda stack: {"config": Config()})
    with pytest.raises(TemplateError) as caught:
        renderer.render("{{ config.Get('{{ q }') }}", {}, WHERE)
    assert str(caught.value) == (f"{WHERE}: {{{{ config.Get('{{{{ q }}') }}}}: "
                                 "file o2/components/x/ANY/any/y: {{ q }: cannot find the "
                                 "closing }} of this tag")
    assert isinstance(caught.value.__cause__, TemplateError)


# --- the sandbox ----------------------------------------------------------------------------

def test_the_sandbox_keeps_internals_out_of_reach() -> None:
    with pytest.raises(TemplateError, match="unsafe|__class__"):
        render("{{ s.__class__ }}", s="x")
    with pytest.raises(TemplateError, match="not callable|not safely callable"):
        render("{{ s() }}", s="x")


def test_jinja_globals_are_not_visible() -> None:
    for name in ("range", "dict", "lipsum", "namespace", "cycler"):
        with pytest.raises(TemplateError, match=f"unknown name {name}"):
            render("{{ " + name + " }}")


# --- evaluate, scopes, caching ------------------------------------------------------------

def test_evaluate_returns_raw_values() -> None:
    renderer = Renderer()
    assert renderer.evaluate("a == 'x'", {"a": "x"}, WHERE) is True
    assert renderer.evaluate("[a, 1]", {"a": "x"}, WHERE) == ["x", 1]
    with pytest.raises(TemplateError) as caught:
        renderer.evaluate("b + 'x'", {}, WHERE)
    assert str(caught.value) == f"{WHERE}: b + 'x': unknown name b"


def test_namespaces_win_over_variables_of_the_same_name() -> None:
    class Strings(Namespace):
        def ToLower(self, s: str) -> str:  # noqa: N802
            return s.lower()

    renderer = Renderer(lambda stack: {"strings": Strings()})
    assert renderer.render("{{ strings.ToLower(x) }}", {"strings": "shadow", "x": "AB"},
                           WHERE) == "ab"


def test_the_stack_is_read_live_and_namespaces_are_made_once_per_stack() -> None:
    made: list[Mapping[str, Any]] = []

    def factory(stack: Mapping[str, Any]) -> dict[str, Any]:
        made.append(stack)
        return {}

    renderer = Renderer(factory)
    stack = {"a": "1"}
    assert renderer.render("{{ a }}", stack, WHERE) == "1"
    stack["a"] = "2"
    stack["b"] = "3"
    assert renderer.render("{{ a }}{{ b }}", stack, WHERE) == "23"
    assert made == [stack]
    other = ChainMap({"a": "x"}, stack)
    assert renderer.render("{{ a }}{{ b }}", other, WHERE) == "x3"
    assert len(made) == 2 and made[1] is other


def test_compiled_expressions_are_cached_by_source_text() -> None:
    first = compile_expression(" cache_probe == 'x' ")
    assert compile_expression(" cache_probe == 'x' ") is first
    assert compile_expression("cache_probe == 'x'") is not first   # other text, other entry
    literals, tags = split_template("a {{ cache_probe == 'x' }}")
    assert split_template("a {{ cache_probe == 'x' }}")[1] is tags
    assert tags[0] is compile_expression(" cache_probe == 'x' ")
    assert first.jinja == "(cache_probe == 'x')"


def test_rendering_from_many_threads() -> None:
    renderer = Renderer(lambda stack: {})
    errors: list[str] = []

    def work(index: int) -> None:
        stack = {"it": f"flp{index}", "n": str(index)}
        for round_ in range(300):
            text = f"host-{{{{ it }}}}-{{{{ n == '{index}' }}}}-{{{{ 'r' + '{round_ % 7}' }}}}"
            got = renderer.render(text, stack, WHERE)
            if got != f"host-flp{index}-true-r{round_ % 7}":
                errors.append(got)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
