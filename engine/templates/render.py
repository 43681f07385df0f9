"""Rendering template strings: `{{ expr }}` tags evaluated on sandboxed Jinja2.

A string is split on `{{` … `}}` the way AliECS's fasttemplate does (the first
`}}` closes a tag, no nesting, an unclosed tag is an error); each tag body is
translated by engine.templates.expr, compiled once per source text, evaluated
against the variable stack and the helper namespaces, stringified Go-style
and spliced back. Templates are the engine's hottest path (a large workflow
renders tens of thousands of tags), so compiled expressions and split strings
are cached, and the scope a stack is evaluated in is built once per stack.
"""
from __future__ import annotations

import functools
import json
import math
import threading
import types
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Iterator, Mapping

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import missing

from engine.templates.expr import OPERATOR_HELPERS, VAR, ExprSyntaxError, analyse

NamespacesFactory = Callable[[Mapping[str, Any]], Mapping[str, Any]]

START_TAG = "{{"
END_TAG = "}}"
_MISSING: Any = missing   # Jinja2's own marker, so Scope.find can answer Jinja2 directly


@dataclass(frozen=True)
class Where:
    """Where a template string comes from, for error messages."""

    repo: str = ""
    file: str = ""
    role_path: str = ""
    field: str = ""

    def __str__(self) -> str:
        parts = [f"{label} {value}" for label, value in (
            ("repo", self.repo), ("file", self.file), ("role", self.role_path),
            ("field", self.field)) if value]
        return ", ".join(parts) if parts else "template"


class TemplateError(Exception):
    """A template string could not be rendered; names where, the expression and why.

    `shown` is how the expression appears in the message: the whole tag
    (`{{ a == b }}`) for tags, the bare text for an evaluated expression.
    """

    def __init__(self, where: Where, expression: str, reason: str,
                 shown: str | None = None) -> None:
        self.where = where
        self.expression = expression
        self.reason = reason
        super().__init__(f"{where}: {expression if shown is None else shown}: {reason}")


def _tag(body: str) -> str:
    return f"{START_TAG}{body}{END_TAG}"


class UnknownNameError(LookupError):
    """An identifier that is neither a variable of the stack nor a helper namespace."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown name {name}")


# --- Go-style output --------------------------------------------------------------------------

def _shortest_digits(value: float) -> tuple[str, int]:
    """The shortest round-tripping decimal digits of a positive finite float and the
    position of its decimal point (value = 0.<digits> × 10**point)."""
    _, digits, exponent = Decimal(repr(value)).as_tuple()
    text = "".join(map(str, digits)).rstrip("0") or "0"
    point = len(digits) + int(exponent)
    return text, point


def _format_e(negative: bool, digits: str, point: int) -> str:
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    exponent = point - 1
    sign = "-" if exponent < 0 else "+"
    return f"{'-' if negative else ''}{mantissa}e{sign}{abs(exponent):02d}"


def _format_f(negative: bool, digits: str, point: int) -> str:
    if point <= 0:
        text = "0." + "0" * -point + digits
    elif point >= len(digits):
        text = digits + "0" * (point - len(digits))
    else:
        text = digits[:point] + "." + digits[point:]
    return ("-" if negative else "") + text


def go_float(value: float) -> str:
    """A float as Go's fmt %v prints it (shortest digits; exponent form from 1e+06 or below 1e-4)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    digits, point = _shortest_digits(abs(value))
    exponent = point - 1
    if exponent < -4 or exponent >= 6:
        return _format_e(value < 0, digits, point)
    return _format_f(value < 0, digits, point)


def _json_float(value: float) -> str:
    """A float as Go's encoding/json writes it."""
    if not math.isfinite(value):
        raise ValueError(f"json: unsupported value: {go_float(value)}")
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    digits, point = _shortest_digits(abs(value))
    if abs(value) < 1e-6 or abs(value) >= 1e21:
        text = _format_e(value < 0, digits, point)
        mantissa, _, exponent = text.partition("e")
        return f"{mantissa}e{exponent[0]}{int(exponent[1:])}"   # e-07 → e-7, as Go does
    return _format_f(value < 0, digits, point)


_HTML_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                               "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _json_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).translate(_HTML_ESCAPES)


def _json_parts(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield _json_string(value)
    elif value is None:
        yield "null"
    elif value is True:
        yield "true"
    elif value is False:
        yield "false"
    elif isinstance(value, int):
        yield str(value)
    elif isinstance(value, float):
        yield _json_float(value)
    elif isinstance(value, (list, tuple)):
        yield "["
        for i, item in enumerate(value):
            if i:
                yield ","
            yield from _json_parts(item)
        yield "]"
    elif isinstance(value, Mapping):
        yield "{"
        for i, key in enumerate(sorted(value, key=str)):
            if i:
                yield ","
            yield _json_string(str(key))
            yield ":"
            yield from _json_parts(value[key])
        yield "}"
    else:
        yield _json_string(str(value))


def go_json(value: Any) -> str:
    """Compact JSON as Go's json.Marshal writes it (sorted keys, <>& escaped, Go floats)."""
    return "".join(_json_parts(value))


def go_string(value: Any) -> str:
    """A tag's value as AliECS splices it: true/false, lists and maps as compact JSON,
    numbers in decimal, nil as the empty string, anything else as its text."""
    kind = type(value)
    if kind is str:
        return value
    if value is None:
        return ""
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float:
        return go_float(value)
    if isinstance(value, (list, tuple, Mapping)):
        return go_json(value)
    return str(value)


# --- compiled expressions ------------------------------------------------------------------

class Namespace:
    """Base of the helper namespaces templates see (`strings`, `json`, `config`, …).

    Their public methods are trusted engine code, so the sandbox lets templates
    call them without its per-call inspection (a large workflow makes tens of
    thousands of such calls); attribute access still goes through the sandbox
    rules, so names starting with "_" stay out of reach.
    """

    __slots__ = ()


# The operator helpers, except VAR which needs the context Jinja2 passes it.
_TRUSTED_FUNCTIONS = frozenset(f for name, f in OPERATOR_HELPERS.items() if name != VAR)


class _Sandbox(SandboxedEnvironment):
    """The sandbox with a fast path for calls into our own helpers."""

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        kind = type(obj)
        if (kind is types.MethodType and isinstance(obj.__self__, Namespace)) or \
                (kind is types.FunctionType and obj in _TRUSTED_FUNCTIONS):
            return obj(*args, **kwargs)
        return super().call(context, obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Namespace) and not attribute.startswith("_"):
            try:
                return getattr(obj, attribute)
            except AttributeError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


class _ExpressionContext(Context):
    """A Jinja2 context over a Scope where an unknown name fails at once.

    Jinja2 resolves every name an expression mentions when it starts running,
    whichever branch is taken, so this gives expr-lang's strictness: a name
    that is defined nowhere is an error even in the branch a ternary skips.
    """

    def resolve_or_missing(self, key: str) -> Any:
        value = self.parent.find(key)
        if value is _MISSING:
            if key in self.vars:
                return self.vars[key]
            raise UnknownNameError(key)
        return value


def _environment() -> _Sandbox:
    env = _Sandbox(undefined=StrictUndefined, autoescape=False, cache_size=0)
    env.context_class = _ExpressionContext
    env.globals.clear()   # templates see only the stack and our namespaces
    return env


_ENV = _environment()
_NO_BLOCKS: dict[str, Any] = {}


class CompiledExpression:
    """One tag body, translated and compiled; evaluate it with `run(scope)`."""

    __slots__ = ("source", "jinja", "names", "_bare", "_template", "_root")

    def __init__(self, source: str) -> None:
        translation = analyse(source)
        self.source = source
        self.jinja = translation.jinja
        self.names = translation.names
        self._bare = translation.bare_name
        if self._bare is None:
            try:
                self._template = _ENV.from_string(f"{{% set result = {translation.jinja} %}}")
            except TemplateSyntaxError as error:   # a translation bug, not a user error
                raise RuntimeError(f"expression {source!r} translated to invalid Jinja2 "
                                   f"{translation.jinja!r}: {error}") from error
            self._root = self._template.root_render_func
        else:
            self._template = None
            self._root = None

    def run(self, scope: "Scope") -> Any:
        """The value of the expression; UnknownNameError if it reads an undefined name."""
        if self._bare is not None:
            value = scope.find(self._bare)
            if value is _MISSING:
                raise UnknownNameError(self._bare)
            return value
        # Built directly rather than with Template.new_context: no globals to merge and
        # no blocks, which makes it less than half the cost.
        context = _ExpressionContext(_ENV, scope, None, _NO_BLOCKS)   # type: ignore[arg-type]
        for _ in self._root(context):   # type: ignore[misc]
            pass
        value = context.vars["result"]
        if isinstance(value, Undefined):
            str(value)   # StrictUndefined raises its own message (missing attribute or item)
        return value


@functools.lru_cache(maxsize=16384)
def compile_expression(source: str) -> CompiledExpression:
    """The compiled form of one tag body, cached by its source text (thread-safe)."""
    return CompiledExpression(source)


class _UnclosedTag(ValueError):
    def __init__(self, rest: str) -> None:
        self.rest = rest
        super().__init__(f"cannot find the closing {END_TAG} of this tag")


@functools.lru_cache(maxsize=16384)
def split_template(text: str) -> tuple[tuple[str, ...], tuple[CompiledExpression, ...]]:
    """fasttemplate's split: the literal pieces (one more than the tags) and the compiled tags."""
    literals: list[str] = []
    tags: list[CompiledExpression] = []
    position = 0
    while True:
        start = text.find(START_TAG, position)
        if start < 0:
            literals.append(text[position:])
            break
        literals.append(text[position:start])
        end = text.find(END_TAG, start + len(START_TAG))
        if end < 0:
            raise _UnclosedTag(text[start + len(START_TAG):])
        tags.append(compile_expression(text[start + len(START_TAG):end]))
        position = end + len(END_TAG)
    return tuple(literals), tuple(tags)


# --- scopes and the renderer ------------------------------------------------------------

_HELPERS: Mapping[str, Any] = OPERATOR_HELPERS


class Scope(Mapping[str, Any]):
    """What an expression sees: operator helpers, then namespaces, then the stack.

    Namespaces win over variables of the same name, as in AliECS (objects are
    put into the expr-lang environment after the variables). The helpers'
    "__" names are never spelled by a translated identifier (those go through
    VAR), so they shadow nothing. The stack is read live, not copied, so one
    scope serves every tag rendered with that stack.
    """

    __slots__ = ("namespaces", "stack")

    def __init__(self, namespaces: Mapping[str, Any], stack: Mapping[str, Any]) -> None:
        self.namespaces = namespaces
        self.stack = stack

    def find(self, name: str) -> Any:
        """The value of a name (helpers, namespaces, stack), or the _MISSING marker."""
        value = _HELPERS.get(name, _MISSING)
        if value is _MISSING:
            value = self.namespaces.get(name, _MISSING)
            if value is _MISSING:
                return self.stack.get(name, _MISSING)
        return value

    def lookup(self, name: str) -> Any:
        """The value of an expr-lang identifier (namespaces, then stack; never a helper)."""
        value = self.namespaces.get(name, _MISSING)
        if value is _MISSING:
            value = self.stack.get(name, _MISSING)
        if value is _MISSING:
            raise UnknownNameError(name)
        return value

    def __getitem__(self, name: str) -> Any:
        value = self.find(name)
        if value is _MISSING:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.find(name) is not _MISSING

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for names in (_HELPERS, self.namespaces, self.stack):
            for name in names:
                if name not in seen:
                    seen.add(name)
                    yield name

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Renderer:
    """Renders template strings and evaluates expressions against a variable stack.

    `namespaces_factory(stack)` gives the helper namespaces (strings, json,
    config, Parent, …) for a stack. It is called once per stack object and
    thread while that stack is the one most recently rendered with, so what
    it returns must read the stack when used rather than copy it. Safe to
    use from several threads.
    """

    def __init__(self, namespaces_factory: NamespacesFactory | None = None) -> None:
        self._factory = namespaces_factory
        self._local = threading.local()

    def scope(self, stack: Mapping[str, Any]) -> Scope:
        """The scope expressions see for this stack (reused while the stack object is)."""
        cached: Scope | None = getattr(self._local, "scope", None)
        if cached is not None and cached.stack is stack:
            return cached
        namespaces = self._factory(stack) if self._factory is not None else {}
        scope = Scope(namespaces, stack)
        self._local.scope = scope
        return scope

    def render(self, text: str, stack: Mapping[str, Any], where: Where) -> str:
        """text with each `{{ expr }}` replaced by its Go-style value."""
        if START_TAG not in text:
            return text
        try:
            literals, tags = split_template(text)
        except _UnclosedTag as error:
            raise TemplateError(where, error.rest, str(error), START_TAG + error.rest) from None
        except ExprSyntaxError as error:
            raise TemplateError(where, error.source, _syntax(error), _tag(error.source)) from None
        scope = self.scope(stack)
        if len(tags) == 1 and not literals[0] and not literals[1]:
            return go_string(self._run(tags[0], scope, where, True))
        out = [literals[0]]
        for tag, literal in zip(tags, literals[1:]):
            out.append(go_string(self._run(tag, scope, where, True)))
            out.append(literal)
        return "".join(out)

    def evaluate(self, expression: str, stack: Mapping[str, Any], where: Where) -> Any:
        """The raw value of one expr-lang expression (no `{{ }}` around it)."""
        try:
            compiled = compile_expression(expression)
        except ExprSyntaxError as error:
            raise TemplateError(where, expression, _syntax(error)) from None
        return self._run(compiled, self.scope(stack), where, False)

    @staticmethod
    def _run(compiled: CompiledExpression, scope: Scope, where: Where, tag: bool) -> Any:
        try:
            return compiled.run(scope)
        except Exception as error:   # noqa: BLE001 - every failure becomes a TemplateError
            source = compiled.source
            shown = _tag(source) if tag else source
            if isinstance(error, UnknownNameError):
                raise TemplateError(where, source, str(error), shown) from None
            reason = str(error) or type(error).__name__
            raise TemplateError(where, source, reason, shown) from error


def _syntax(error: ExprSyntaxError) -> str:
    return f"syntax error: {error.reason} at column {error.position + 1}"
