"""Bad input to the template loader: random and malformed YAML, wrong types for every
field of the workflow schema, random `{{ }}` expressions and template-function calls.
The only exceptions allowed out are the engine's user errors (WorkflowError,
TemplateError…), each naming the file; nothing else (KeyError, TypeError,
RecursionError…) may escape the loader or the expression evaluator."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from engine import USER_ERRORS
from engine.repos.records import TemplateFile
from engine.templates.render import Renderer, TemplateError, Where
from engine.workdir import WorkingDirectory
from engine.workflow.loader import WorkflowLoader
from tests.conftest import make_template_repo
from tests.fuzzing import fuzz_settings

FUZZ = fuzz_settings(200)

TASK = """\
name: t
control: {mode: basic}
wants: {cpu: 0.1, memory: 10}
command: {value: "true"}
"""
SUB = """\
name: sub
roles:
  - name: one
    task: {load: t}
"""
LOOP = """\
name: loop
roles:
  - name: again
    include: loop
"""
WHERE = Where(repo="repo", file="workflows/fuzz.yaml", role_path="fuzz.a", field="enabled")
ORIGIN_PART = "workflows/fuzz.yaml"


@pytest.fixture(scope="module")
def loader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WorkflowLoader, str]]:
    """One working directory and one template repository for every example."""
    root = tmp_path_factory.mktemp("fuzz-templates")
    workdir = WorkingDirectory.from_environment({"NUTSHELL_HOME": str(root / "home")}).ensure()
    repo = make_template_repo(root / "templates", {"tasks/t.yaml": TASK,
                                                   "workflows/sub.yaml": SUB,
                                                   "workflows/loop.yaml": LOOP}, corpus=False)
    made = WorkflowLoader(workdir)
    repo_id = made.repos.add(str(repo), "master").repo
    # GitPython keeps `git cat-file` processes per repository: start them now, before the
    # tests (the suite's fixture fails a test that leaves a new process behind)
    made.load(f"{repo_id}/workflows/sub", {}, environment_id="2fuzzEnv")
    yield made, repo_id
    made.close()


def load_text(loader: tuple[WorkflowLoader, str], text: str,
              user_vars: dict[str, Any] | None = None) -> None:
    """Load `text` as workflows/fuzz.yaml of the test repository: it loads, or it fails
    with a user error naming the file."""
    made, repo = loader
    file = TemplateFile(repo=repo, revision="master", commit="local",
                        path=ORIGIN_PART, text=text)
    try:
        made.load_file(file, user_vars or {}, environment_id="2fuzzEnv")
    except USER_ERRORS as error:
        message = str(error)
        assert message.strip(), f"{type(error).__name__} without a message"
        assert ORIGIN_PART in message, f"{type(error).__name__} does not name the file: {message}"


# ---------------------------------------------------------------- strategies

NAMES = ["a", "b", "x", "i", "name", "environment_id", "detectors", "roles", "Parent",
         "Up", "len", "nil", "true", "false", "strings", "json", "util", "config", "inventory",
         "uid", "ToJson", "FromJson", "Atoi", "Itoa", "IsTruthy", "SuffixInRange",
         "Nullable", "PrefixedOverride", "GetConfig", "NewID", "TrimQuotes", "ToUpper"]
ATTRIBUTES = ["Path", "Name", "Atoi", "Itoa", "Split", "Unmarshal", "Marshal", "Get", "New",
              "DetectorForHost", "IsTruthy", "ResolvePath", "Sort", "Nullable", "x"]
OPERATORS = ["+", "-", "*", "/", "%", "==", "!=", "<", ">", "<=", ">=", "&&", "||", "!",
             "and", "or", "not", "in", "not in", "contains", "?", ":", ".", ",", "(", ")",
             "[", "]", "{", "}", "`", "'", '"', "\\", "|", "~", "#", "$", "{{", "}}"]
_number = st.one_of(st.integers(-10**30, 10**30), st.floats(allow_nan=True),
                    st.sampled_from(["0x", "1e999", "1.2.3", "09", "1_000", ".5", "5."]))
_string_literal = st.text(max_size=12).map(lambda s: repr(s) if len(s) % 2 else f'"{s}"')
TOKEN = st.one_of(st.sampled_from(NAMES), st.sampled_from(OPERATORS),
                  st.sampled_from(ATTRIBUTES).map(lambda a: f".{a}"), _number.map(str),
                  _string_literal, st.text(max_size=4))


@st.composite
def token_soup(draw: st.DrawFn) -> str:
    """A random sequence of expr-lang tokens: mostly invalid, sometimes valid."""
    return " ".join(draw(st.lists(TOKEN, max_size=14)))


def _call(name: str, arguments: list[str]) -> str:
    return f"{name}({', '.join(arguments)})"


_argument = st.one_of(_string_literal, _number.map(str), st.sampled_from(NAMES),
                      st.sampled_from(["[]", "{}", "[1, 'a']", "{'k': 1}", "nil", "-1"]))
FUNCTIONS = ["strings.Atoi", "strings.Itoa", "strings.TrimQuotes", "strings.IsTruthy",
             "strings.ToUpper", "json.Unmarshal", "json.Marshal", "json.Sort",
             "json.Serialize", "json.Deserialize", "util.SuffixInRange", "util.Nullable",
             "util.PrefixedOverride", "config.Get", "config.GetLegacy", "config.Resolve",
             "config.ResolvePath", "inventory.DetectorForHost", "inventory.DetectorsForHosts",
             "inventory.CRUCardsForHost", "inventory.EndpointsForCRUCard", "runtime.Get",
             "uid.New", "Atoi", "Itoa", "FromJson", "ToJson", "SuffixInRange", "Nullable",
             "PrefixedOverride", "GetConfig", "GetConfigLegacy", "ResolveConfigPath",
             "DetectorForHost", "CRUCardsForHost", "GetRuntimeConfig", "len", "Up", "Parent",
             "strings.Nope", "nope.Nope", "x"]
FUNCTION_CALL = st.builds(_call, st.sampled_from(FUNCTIONS), st.lists(_argument, max_size=4))
EXPRESSION = st.one_of(token_soup(), FUNCTION_CALL, st.text(max_size=30),
                       st.builds(lambda a, o, b: f"{a} {o} {b}", FUNCTION_CALL,
                                 st.sampled_from(OPERATORS), FUNCTION_CALL))
TEMPLATE_TEXT = st.one_of(
    EXPRESSION.map(lambda e: "{{ " + e + " }}"),
    st.builds(lambda a, e, b: f"{a}{{{{{e}}}}}{b}", st.text(max_size=8), EXPRESSION,
              st.text(max_size=8)),
    st.lists(st.sampled_from(["{{", "}}", "{", "}", "a", " ", "{%", "%}", "{#"]),
             max_size=8).map("".join))
STACK = {"a": "1", "b": "true", "x": "[1,2]", "name": "fuzz", "detectors": '["TPC"]',
         "i": "3"}


@given(EXPRESSION)
@FUZZ
def test_evaluator_raises_only_template_errors(expression: str) -> None:
    try:
        Renderer().evaluate(expression, STACK, WHERE)
    except TemplateError as error:
        assert str(error).startswith(str(WHERE)), str(error)


@given(TEMPLATE_TEXT)
@FUZZ
def test_renderer_raises_only_template_errors(text: str) -> None:
    try:
        Renderer().render(text, STACK, WHERE)
    except TemplateError as error:
        assert str(error).startswith(str(WHERE)), str(error)


# ---------------------------------------------------------------- YAML and the schema

@given(st.text(max_size=200))
@FUZZ
def test_random_text_is_a_clear_error(loader: tuple[WorkflowLoader, str], text: str) -> None:
    load_text(loader, text)


YAML_PIECES = ["name: fuzz\n", "roles:\n", "  - name: a\n", "    task: {load: t}\n",
               "    roles: [", "]\n", "- ", ": ", "{", "}", "[", "]", "&anchor ", "*anchor",
               "!!python/object:os.system ", "!public ", "!!binary ", "<<: *anchor\n",
               "? ", "|\n", ">\n", "'", '"', "\t", "    ", "---\n", "...\n", "%YAML 1.2\n",
               "{{ a }}", "for:\n", "  begin: 0\n", "  end: 3\n", "  var: i\n", "\n",
               "include: sub\n", "enabled: ", "defaults:\n", "  x: 1\n", "#comment\n"]


@given(st.lists(st.sampled_from(YAML_PIECES), max_size=25).map("".join))
@FUZZ
def test_malformed_yaml_is_a_clear_error(loader: tuple[WorkflowLoader, str], text: str) -> None:
    load_text(loader, text)


_scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True), st.text(max_size=10), TEMPLATE_TEXT,
                    st.sampled_from(["t", "sub", "fuzz", "i", "0", "3", "-1", "yes", "maybe",
                                     "{{ i }}", "x-{{ i }}", "1s", "forever", "dcs.Nope()"]))
JUNK = st.recursive(_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.one_of(st.text(max_size=6), st.sampled_from(
        ["name", "var", "begin", "end", "range", "load", "func", "attribute", "value", "type",
         "transport", "target", "trigger", "timeout", "critical"])), inner, max_size=3)),
    max_leaves=8)
def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`valid` about four times in five, else junk: enough wrong values without stopping
    most examples at the first field."""
    return st.sampled_from([True, True, True, True, False]).flatmap(
        lambda keep: valid if keep else JUNK)


ROLE_FIELDS = ["name", "task", "call", "roles", "include", "for", "enabled", "defaults", "vars",
               "constraints", "connect", "bind", "description"]


@st.composite
def role(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    """A role with its known fields given plausible or wrong values."""
    body: dict[str, Any] = {"name": draw(mostly(st.sampled_from(["a", "x-{{ i }}", "b"])))}
    kind = draw(st.sampled_from(["task", "call", "roles", "include", "none", "two"]))
    if kind in ("task", "two"):
        body["task"] = draw(st.one_of(st.fixed_dictionaries(
            {"load": st.one_of(st.just("t"), JUNK)},
            optional={"critical": JUNK, "trigger": JUNK, "timeout": JUNK, "await": JUNK}),
            JUNK))
    if kind in ("call", "two"):
        body["call"] = draw(st.one_of(st.fixed_dictionaries(
            {"func": st.one_of(FUNCTION_CALL, JUNK)},
            optional={"return": JUNK, "trigger": JUNK, "timeout": JUNK, "critical": JUNK}),
            JUNK))
    if kind == "roles":
        body["roles"] = (draw(st.lists(role(depth + 1), max_size=2)) if depth < 2
                         else draw(JUNK))
    if kind == "include":
        body["include"] = draw(st.one_of(st.sampled_from(["sub", "fuzz", "nope", "x/y@z"]),
                                         JUNK))
    for field in draw(st.lists(st.sampled_from(ROLE_FIELDS[5:]), max_size=4, unique=True)):
        body[field] = draw(field_value(field))
    return body


def field_value(field: str) -> st.SearchStrategy[Any]:
    if field == "for":
        return st.one_of(st.fixed_dictionaries(
            {"var": st.one_of(st.just("i"), JUNK)},
            optional={"begin": JUNK, "end": JUNK, "range": JUNK}), JUNK)
    if field in ("defaults", "vars"):
        return st.one_of(st.dictionaries(st.text(max_size=6), st.one_of(TEMPLATE_TEXT, JUNK),
                                         max_size=3), JUNK)
    if field == "constraints":
        return st.one_of(st.lists(st.fixed_dictionaries(
            {"attribute": JUNK, "value": st.one_of(TEMPLATE_TEXT, JUNK)}), max_size=2), JUNK)
    if field in ("connect", "bind"):
        return st.one_of(st.lists(st.fixed_dictionaries(
            {"name": JUNK}, optional={"type": st.one_of(st.sampled_from(["push", "pull"]), JUNK),
                                      "target": JUNK, "transport": JUNK}), max_size=2), JUNK)
    return st.one_of(TEMPLATE_TEXT, JUNK)


@st.composite
def workflow(draw: st.DrawFn) -> dict[str, Any]:
    document: dict[str, Any] = {"name": draw(mostly(st.just("fuzz"))),
                                "roles": draw(mostly(st.lists(role(), min_size=1, max_size=3)))}
    for field in draw(st.lists(st.sampled_from(["defaults", "vars", "description"]),
                               max_size=2, unique=True)):
        document[field] = draw(field_value(field))
    if not draw(mostly(st.just(True))):  # what only roles below the root may have
        document[draw(st.sampled_from(["task", "for", "enabled", "include"]))] = draw(JUNK)
    return document


@given(workflow(), st.dictionaries(st.sampled_from(["a", "i", "detectors", "x", "roles"]),
                                   st.one_of(TEMPLATE_TEXT, JUNK), max_size=2))
@FUZZ
def test_wrong_types_in_the_schema_are_clear_errors(
        loader: tuple[WorkflowLoader, str], document: dict[str, Any],
        user_vars: dict[str, Any]) -> None:
    load_text(loader, yaml.safe_dump(document, allow_unicode=True), user_vars)


def test_deep_nesting_is_a_clear_error(loader: tuple[WorkflowLoader, str]) -> None:
    """A role tree deeper than Python's recursion limit: an error naming the file."""
    text = "name: fuzz\nroles:\n" + "".join(
        f"{'  ' * (2 * level + 1)}- name: r{level}\n{'  ' * (2 * level + 2)}roles:\n"
        for level in range(1500)) + f"{'  ' * 3001}- {{name: t, task: {{load: t}}}}\n"
    load_text(loader, text)


def test_include_loop_is_a_clear_error(loader: tuple[WorkflowLoader, str]) -> None:
    made, repo = loader
    with pytest.raises(USER_ERRORS) as caught:
        made.load(f"{repo}/workflows/loop", {}, environment_id="2fuzzEnv")
    assert "loop" in str(caught.value)


@pytest.mark.parametrize("expression", [
    "(" * 3000 + "1" + ")" * 3000, "!" * 100 + "true", "-" * 300 + "1", "[" * 200 + "]" * 200,
    "1" + "+1" * 150, "a" + ".b" * 400, "len(" * 100 + "a" + ")" * 100,
    "1 ? " * 100 + "1" + " : 1" * 100, "{'k': " * 60 + "1" + "}" * 60])
def test_deep_expressions_are_template_errors(expression: str) -> None:
    """Found by the fuzzer: deep nesting overflowed the Jinja2 and Python compilers
    (RecursionError, SyntaxError "too many nested parentheses")."""
    with pytest.raises(TemplateError) as caught:
        Renderer().evaluate(expression, STACK, WHERE)
    assert "nests deeper than" in caught.value.reason


def test_deep_yaml_is_a_clear_error(loader: tuple[WorkflowLoader, str]) -> None:
    """Found by the fuzzer: PyYAML's RecursionError escaped the loader."""
    made, repo = loader
    text = "name: fuzz\nroles: " + "[" * 2000 + "]" * 2000 + "\n"
    file = TemplateFile(repo=repo, revision="master", commit="local", path=ORIGIN_PART,
                        text=text)
    with pytest.raises(USER_ERRORS) as caught:
        made.load_file(file, {}, environment_id="2fuzzEnv")
    assert "nested too deeply" in str(caught.value) and ORIGIN_PART in str(caught.value)
