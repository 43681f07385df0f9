"""The visibleif / enabledif conditions of VarSpecs, evaluated against the form's values.

The templates write them in the JavaScript the AliECS GUI evaluates, e.g.
`$$epn_enabled === "true" && ($$pdp_config_option === "Repository hash" || …)`.
This is that subset: `$$name` (the field's current text), string and number
literals, true/false, === !== == != && || ! and parentheses. Anything else raises
ConditionError, so the form can keep the field shown and log why.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_TOKEN = re.compile(r"""\s*(?:
    (?P<var>\$\$[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<word>true|false)
  | (?P<op>===|!==|==|!=|&&|\|\||!|\(|\))
)""", re.VERBOSE)

Value = str | bool | float


class ConditionError(ValueError):
    """A condition outside the supported subset; the message names the expression and where."""


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    position: int


def _tokens(expression: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(expression):
        if expression[position:].strip() == "":
            break
        match = _TOKEN.match(expression, position)
        if match is None or match.end() == position:
            raise ConditionError(f"{expression!r}: cannot read at column {position + 1}")
        kind = match.lastgroup or ""
        tokens.append(_Token(kind, match.group(kind), match.start(kind)))
        position = match.end()
    return tokens


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def _equal(left: Value, right: Value) -> bool:
    """JavaScript equality over what the form holds: field texts compare as text,
    a boolean literal against the text "true"/"false", a number literal numerically."""
    if isinstance(left, bool) or isinstance(right, bool):
        return str(left).lower() == str(right).lower()
    if isinstance(left, float) or isinstance(right, float):
        try:
            return float(left) == float(right)
        except ValueError:
            return False
    return left == right


def _truthy(value: Value) -> bool:
    if isinstance(value, str):
        return value != ""
    return bool(value)


class _Parser:
    """Recursive descent: or → and → equality → unary → primary."""

    def __init__(self, expression: str, values: Mapping[str, str]) -> None:
        self.expression = expression
        self.tokens = _tokens(expression)
        self.at = 0
        self.values = values

    def parse(self) -> bool:
        if not self.tokens:
            raise ConditionError(f"{self.expression!r}: empty condition")
        result = self._or()
        if self.at != len(self.tokens):
            token = self.tokens[self.at]
            raise ConditionError(f"{self.expression!r}: unexpected {token.text!r} "
                                 f"at column {token.position + 1}")
        return _truthy(result)

    def _peek(self) -> str:
        return self.tokens[self.at].text if self.at < len(self.tokens) else ""

    def _or(self) -> Value:
        left = self._and()
        while self._peek() == "||":
            self.at += 1
            right = self._and()
            left = _truthy(left) or _truthy(right)
        return left

    def _and(self) -> Value:
        left = self._equality()
        while self._peek() == "&&":
            self.at += 1
            right = self._equality()
            left = _truthy(left) and _truthy(right)
        return left

    def _equality(self) -> Value:
        left = self._unary()
        while self._peek() in ("===", "!==", "==", "!="):
            operator = self._peek()
            self.at += 1
            right = self._unary()
            same = _equal(left, right)
            left = same if operator in ("===", "==") else not same
        return left

    def _unary(self) -> Value:
        if self._peek() == "!":
            self.at += 1
            return not _truthy(self._unary())
        return self._primary()

    def _primary(self) -> Value:
        if self.at >= len(self.tokens):
            raise ConditionError(f"{self.expression!r}: ends too early")
        token = self.tokens[self.at]
        self.at += 1
        if token.kind == "var":
            name = token.text[2:]
            if name not in self.values:
                raise ConditionError(f"{self.expression!r}: no field {name!r} in this form")
            return self.values[name]
        if token.kind == "string":
            return _unquote(token.text)
        if token.kind == "number":
            return float(token.text)
        if token.kind == "word":
            return token.text == "true"
        if token.text == "(":
            inner = self._or()
            if self._peek() != ")":
                raise ConditionError(f"{self.expression!r}: missing ')' for the '(' "
                                     f"at column {token.position + 1}")
            self.at += 1
            return inner
        raise ConditionError(f"{self.expression!r}: unexpected {token.text!r} "
                             f"at column {token.position + 1}")


def condition_holds(expression: str, values: Mapping[str, str]) -> bool:
    """Whether a visibleif/enabledif holds for the form's `values` (an empty one always does)."""
    if not expression.strip():
        return True
    return _Parser(expression, values).parse()
