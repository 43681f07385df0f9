"""expr-lang → Jinja2 translation: tokens, grammar and precedence, the meaning of each
operator once evaluated, syntax errors with their position, and the whole corpus."""
from __future__ import annotations

from typing import Any, Iterator

import jinja2
import pytest

from engine.templates.expr import (
    ExprSyntaxError,
    TokenKind,
    analyse,
    jinja_string,
    tokenize,
    translate,
)
from engine.templates.render import Renderer, TemplateError, Where, compile_expression
from engine.templates.yamlsource import Public, load_yaml
from tests.conftest import CORPUS

WHERE = Where(repo="repo", file="f.yaml", role_path="root.a", field="enabled")


def value(expression: str, **stack: Any) -> Any:
    return Renderer().evaluate(expression, stack, WHERE)


def failure(expression: str, **stack: Any) -> str:
    with pytest.raises(TemplateError) as caught:
        Renderer().evaluate(expression, stack, WHERE)
    return caught.value.reason


# --- tokens --------------------------------------------------------------------------------

def test_tokens_of_a_corpus_expression() -> None:
    tokens = tokenize("len(modulepath)>0 ? _module_cmdline : _plain_cmdline")
    assert [(t.kind, t.text) for t in tokens] == [
        (TokenKind.NAME, "len"), (TokenKind.OP, "("), (TokenKind.NAME, "modulepath"),
        (TokenKind.OP, ")"), (TokenKind.OP, ">"), (TokenKind.NUMBER, "0"), (TokenKind.OP, "?"),
        (TokenKind.NAME, "_module_cmdline"), (TokenKind.OP, ":"),
        (TokenKind.NAME, "_plain_cmdline"), (TokenKind.EOF, "")]
    assert tokens[5].value == 0 and tokens[7].position == 20


@pytest.mark.parametrize(("source", "decoded"), [
    (r"'plain'", "plain"),
    (r'"double"', "double"),
    (r"'it\'s'", "it's"),
    (r'"say \"hi\""', 'say "hi"'),
    (r"'back\\slash'", "back\\slash"),
    (r"'line\nbreak\ttab\rcr'", "line\nbreak\ttab\rcr"),
    (r"'\x41\u00e9\U0001F600\101'", "A\u00e9\U0001F600A"),
    (r"'\a\b\f\v'", "\a\b\f\v"),
    ("`raw \\n 'quotes'`", "raw \\n 'quotes'"),
    ("'{{ not a tag }}'", "{{ not a tag }}"),
    ("'a %} b {# c #} {% raw %}'", "a %} b {# c #} {% raw %}"),
])
def test_string_literals_decode_expr_escapes(source: str, decoded: str) -> None:
    [token, _] = tokenize(source)
    assert token.kind is TokenKind.STRING and token.value == decoded
    # ... and come back out as a Jinja2 literal with the same value
    assert value(source) == decoded
    assert jinja2.Environment().compile_expression(jinja_string(decoded))() == decoded


@pytest.mark.parametrize(("source", "number"), [
    ("0", 0), ("42", 42), ("1_000", 1000), ("0x1F", 31), ("2.5", 2.5), (".5", 0.5),
    ("1e3", 1000.0), ("1.5e-3", 0.0015),
])
def test_numbers(source: str, number: float) -> None:
    [token, _] = tokenize(source)
    assert token.kind is TokenKind.NUMBER and token.value == number
    assert value(source) == number


@pytest.mark.parametrize(("source", "reason", "column"), [
    ("'open", "unterminated string literal", 1),
    ('"bad \\q"', "unknown escape sequence \\q", 6),
    ("a @ b", "unexpected character '@'", 3),
    ("'\\x4'", "invalid escape \\x4'", 2),
])
def test_token_errors_name_the_position(source: str, reason: str, column: int) -> None:
    with pytest.raises(ExprSyntaxError) as caught:
        translate(source)
    assert caught.value.reason == reason
    assert caught.value.position == column - 1
    assert str(caught.value) == f"{reason} at column {column} of {source!r}"


# --- grammar and translation -----------------------------------------------------------------

@pytest.mark.parametrize(("source", "jinja"), [
    ("a", "a"),
    ("true", "True"), ("false", "False"), ("nil", "None"),
    ("a == 'x'", "(a == 'x')"),
    ("a != \"x\"", "(a != 'x')"),
    ("a && b == 'x'", "(__bool(a, '&&') and (b == 'x'))"),
    ("a == 'x' || b == 'y' && c == 'z'", "((a == 'x') or ((b == 'y') and (c == 'z')))"),
    ("!strings.IsFalsy(x)", "(not __bool(strings.IsFalsy(x), '!'))"),
    ("!(a == b)", "(not (a == b))"),
    ("c == 'true' ? 'y' : 'n'", "('y' if (c == 'true') else 'n')"),
    ("'--dir=' + d", "__add('--dir=', d)"),
    ("x contains 'ITS'", "__contains(x, 'ITS')"),
    ("x not contains 'ITS'", "(not __contains(x, 'ITS'))"),
    ("'MCH' in json.Unmarshal(d)", "('MCH' in json.Unmarshal(d))"),
    ("'MCH' not in l", "('MCH' not in l)"),
    ("len(modulepath)>0", "(__len(modulepath) > 0)"),
    ("Up(2).Path", "Up(2).Path"),
    ("Parent().Path + '.stfb:x'", "__add(Parent().Path, '.stfb:x')"),
    ("m['k'][0]", "m['k'][0]"),
    ("[1, 'a', nil]", "[1, 'a', None]"),
    ("{a: 1, 'b c': true}", "{'a': 1, 'b c': True}"),
    ("a - b * c / d % e", "__arith('-', a, __arith('%', __arith('/', __arith('*', b, c), d), e))"),
    ("-a", "(-a)"),
    ("a and b or not c", "((__bool(a, '&&') and __bool(b, '&&')) or (not __bool(c, '!')))"),
])
def test_translation(source: str, jinja: str) -> None:
    assert translate(source) == jinja


def test_identifiers_that_jinja_reserves_are_looked_up_by_name() -> None:
    assert translate("none + True + $x + __add") == \
        "__add(__add(__add(__var('none'), __var('True')), __var('$x')), __var('__add'))"
    assert value("none + True + $x + __add + self", none="a", self="e",
                 **{"True": "b", "$x": "c", "__add": "d"}) == "abcde"


def test_identifiers_that_are_python_keywords_or_jinja_internals_are_plain_names() -> None:
    names = ["class", "lambda", "import", "loop", "caller", "varargs", "kwargs", "result",
             "missing", "context", "environment", "resolve", "undefined", "l_0_x", "super"]
    stack = {name: f"<{name}>" for name in names}
    for name in names:
        assert value(f"{name} + ''", **stack) == f"<{name}>", name


def test_analysis_lists_the_names_read_in_source_order() -> None:
    translation = analyse("c ? strings.ToLower(a) : len(b) > 0")
    assert translation.names == ("c", "strings", "a", "b")   # len() is a builtin, not a name
    assert translation.bare_name is None
    assert analyse(" it ").bare_name == "it"


# --- what each operator means ----------------------------------------------------------------

def test_precedence_ternary_is_lowest_and_right_associative() -> None:
    assert value("a == 'x' ? 'one' : a == 'y' ? 'two' : 'three'", a="y") == "two"
    assert value("a == 'x' ? 'one' : a == 'y' ? 'two' : 'three'", a="z") == "three"
    assert value("t || f ? 'yes' : 'no'", t=True, f=False) == "yes"   # (t || f) ? …
    assert value("true ? false ? 1 : 2 : 3") == 2


def test_precedence_and_binds_tighter_than_or() -> None:
    assert value("true || false && false") is True
    assert value("(true || false) && false") is False


def test_precedence_of_not_and_arithmetic() -> None:
    assert value("!a == b", a=True, b=False) is True          # (!a) == b
    assert value("1 + 2 * 3") == 7
    assert value("(1 + 2) * 3") == 9
    assert value("-2 * 3 + 10 / 4") == -3.5
    assert value("7 % 3 == 1 && -7 % 3 == -1") is True       # Go's sign rule
    assert value("10 - 2 - 3") == 5                          # left-associative


def test_comparisons() -> None:
    assert value("a == 'x' && a != 'y'", a="x") is True
    assert value("len(s) > 0", s="") is False
    assert value("1 < 2 && 2 <= 2 && 3 > 2 && 3 >= 4") is False
    assert value("'abc' < 'abd'") is True
    assert value("n == nil", n=None) is True


def test_in_and_contains() -> None:
    detectors = '["ITS","MCH"]'
    assert value("'MCH' in json.Unmarshal(d)", d=detectors, json=_Json()) is True
    assert value("'TPC' in json.Unmarshal(d)", d=detectors, json=_Json()) is False
    assert value("'TPC' not in json.Unmarshal(d)", d=detectors, json=_Json()) is True
    assert value("'k' in m", m={"k": 1}) is True
    assert value("detectors contains 'ITS'", detectors=detectors) is True   # substring
    assert value("detectors contains 'TPC'", detectors=detectors) is False
    assert value("l contains 'b'", l=["a", "b"]) is True
    assert value("s not contains 'x'", s="abc") is True
    assert "invalid operation: int contains string" in failure("n contains 'x'", n=3)


def test_logical_operators_short_circuit_and_need_booleans() -> None:
    assert value("false && undefined_call()", undefined_call=_explode) is False
    assert value("true || undefined_call()", undefined_call=_explode) is True
    reason = failure("a && true", a="true")
    assert reason == "&& needs a bool, got string \"true\" (compare it, e.g. x == 'true')"
    assert failure("!a", a="false").startswith("! needs a bool, got string")
    assert failure("a ? 1 : 2", a="yes").startswith("?: needs a bool, got string")


def test_plus_is_nil_safe_concatenation_or_addition() -> None:
    assert value("a + b", a="x", b="y") == "xy"
    assert value("a + b", a=None, b="y") == "y"
    assert value("a + b", a="x", b=None) == "x"
    assert value("a + b", a=None, b=None) == ""
    assert value("1 + 2.5") == 3.5
    assert failure("a + 1", a="x") == ("invalid operation: string + int "
                                       "(+ joins strings, with nil as \"\", or adds numbers)")
    assert failure("a + b", a=["x"], b=["y"]).startswith("invalid operation: array + array")
    assert failure("true + 1").startswith("invalid operation: bool + int")


def test_arithmetic_needs_numbers() -> None:
    assert failure("a * 3", a="ab") == "invalid operation: string * int (* needs numbers)"
    assert failure("1 / 0") == "division by zero"
    assert failure("1.5 % 1").startswith("invalid operation: float64 % int")


def test_len() -> None:
    assert value("len(s)", s="héllo") == 5
    assert value("len(l)", l=[1, 2]) == 2
    assert value("len(m)", m={"a": 1}) == 1
    assert failure("len(n)", n=None) == "invalid argument for len (type nil)"


def test_attribute_and_index_access() -> None:
    role = _Role("root.flp", "flp")
    assert value("Parent().Path", Parent=lambda: role) == "root.flp"
    assert value("m.key", m={"key": "v"}) == "v"          # attribute syntax on a map
    assert value("l[1] + l[-1]", l=["a", "b", "c"]) == "bc"


# --- syntax errors -----------------------------------------------------------------------

@pytest.mark.parametrize(("source", "reason", "column"), [
    ("", "empty expression", 1),
    ("a ==", "unexpected end of expression", 5),
    ("a b", "unexpected name 'b'", 3),
    ("(a", "expected ')' before the end of the expression", 3),
    ("a ? b", "expected ':' before the end of the expression", 6),
    ("a ?: b", "the short form 'a ?: b' is not supported", 4),
    ("a matches 'x'", "operator 'matches' is not supported", 3),
    ("a ?? b", "operator '??' is not supported", 3),
    ("len(a, b)", "len() takes exactly one argument, got 2", 1),
    ("l[1:2]", "slices are not supported", 4),
    ("a.", "expected a name after '.'", 3),
    ("f(a,, b)", "unexpected operator ','", 5),
])
def test_syntax_errors_name_what_and_where(source: str, reason: str, column: int) -> None:
    with pytest.raises(ExprSyntaxError) as caught:
        translate(source)
    assert (caught.value.reason, caught.value.position + 1) == (reason, column)


# --- the corpus ------------------------------------------------------------------------------

def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, Public):
        yield from _strings(node.value)
    elif isinstance(node, dict):
        for key, item in node.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, str):
        yield node


def _tag_bodies(text: str) -> Iterator[str]:
    position = 0
    while (start := text.find("{{", position)) >= 0:
        end = text.find("}}", start + 2)
        assert end >= 0, f"unclosed tag in {text!r}"
        yield text[start + 2:end]
        position = end + 2


def corpus_expressions() -> dict[str, str]:
    """Every distinct tag body of the corpus's workflows and tasks → the first file using it."""
    found: dict[str, str] = {}
    files = sorted(CORPUS.glob("workflows/*.yaml")) + sorted(CORPUS.glob("tasks/*.yaml"))
    assert len(files) == 22, f"expected the 10 workflows and 12 tasks under {CORPUS}"
    for path in files:
        document = load_yaml(path.read_text(encoding="utf-8"), str(path))
        for text in _strings(document):
            for body in _tag_bodies(text):
                found.setdefault(body, path.name)
    return found


def test_every_corpus_expression_translates_and_compiles_in_jinja2() -> None:
    expressions = corpus_expressions()
    assert len(expressions) > 200
    plain = jinja2.Environment()
    failures = []
    for body, origin in expressions.items():
        try:
            jinja = translate(body)
            plain.parse("{{ " + jinja + " }}")   # valid Jinja2 as text
            compile_expression(body)              # and compiled by our sandbox
        except Exception as error:  # noqa: BLE001 - collect them all for one report
            failures.append(f"{origin}: {body!r}: {error}")
    assert not failures, "\n".join(failures)
    # the constructs that are not Jinja2 as written are all there
    for construct in ("contains", "&&", "||", " ? ", "!strings", '\\"', "len(", ").Path", " in "):
        assert any(construct in body for body in expressions), construct


# --- helpers --------------------------------------------------------------------------------

class _Json:
    def Unmarshal(self, text: str) -> Any:  # noqa: N802
        import json
        return json.loads(text)


class _Role:
    def __init__(self, path: str, name: str) -> None:
        self.Path = path
        self.Name = name


def _explode() -> None:
    raise AssertionError("the right-hand side must not be evaluated")
