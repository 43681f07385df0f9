"""expr-lang expressions (the bodies of `{{ }}` tags) translated to Jinja2 expressions.

AliECS evaluates each tag body with expr-lang; we evaluate on Jinja2, so a tag
body is tokenized and parsed here with expr-lang's grammar and precedence, and
re-emitted as a fully parenthesised Jinja2 expression. Where the two languages
differ in meaning, the output calls a small runtime helper instead of a Jinja2
operator (`+` is AliECS's nil-safe concatenation, `contains`, `len`, the
boolean operands of `&&`/`||`/`!`/`?:`), and OPERATOR_HELPERS holds those
helpers for the renderer to put in scope.

Supported (the subset of reference template-language.md §6, plus what falls
out of the same grammar): `c ? a : b`, `||`/`or`, `&&`/`and`, `!`/`not`,
`==` `!=` `<` `>` `<=` `>=`, `in`, `not in`, `contains`, `not contains`,
`+` `-` `*` `/` `%`, unary `-`/`+`, parentheses, 'single', "double" and
`back-quoted` strings with expr-lang's escapes, integers and floats,
`true`/`false`/`nil`, `[lists]`, `{maps}`, calls, `.attribute` and `[index]`
on any value (`Parent().Path`), and the builtin `len(x)`.

Precedence, lowest first, as in expr-lang: ternary; `||`; `&&`; comparisons,
`in`, `contains`; `+ -`; `* / %`; unary `!` (binds looser than `*`, tighter
than `+`); unary `-`/`+`; postfix call, attribute and index.
"""
from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass
from typing import Any, Callable

from jinja2 import pass_context
from jinja2.runtime import Context

# Names of the runtime helpers the translation calls. They start with "__", and any
# expr-lang identifier starting with "__" is looked up through VAR, so they never collide.
ADD = "__add"
ARITH = "__arith"
BOOL = "__bool"
CONTAINS = "__contains"
LEN = "__len"
VAR = "__var"

# Identifiers that are fine in expr-lang but are keywords or literals in Jinja2, or that
# Jinja2 binds itself (`self` is the template reference).
_JINJA_RESERVED = frozenset({
    "and", "or", "not", "in", "is", "if", "else", "true", "false", "none", "True", "False",
    "None", "self",
})

# expr-lang operators we recognise but do not translate: a clear error beats "unexpected name".
_UNSUPPORTED_WORDS = frozenset({"matches", "startsWith", "endsWith", "let"})
_UNSUPPORTED_OPS = ("??", "?.", "**", "^", "..", "|", "#")


class ExprSyntaxError(ValueError):
    """An expression that expr-lang would refuse to compile; says what and where."""

    def __init__(self, reason: str, source: str, position: int) -> None:
        self.reason = reason
        self.source = source
        self.position = position
        super().__init__(f"{reason} at column {position + 1} of {source!r}")


# --- tokens -----------------------------------------------------------------------------------

class TokenKind(enum.Enum):
    NAME = "name"
    NUMBER = "number"
    STRING = "string"
    OP = "operator"
    EOF = "end of expression"


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    text: str          # the source spelling (for messages)
    value: Any         # the decoded value: str for names/ops/strings, int/float for numbers
    position: int


# Longest first, so "<=" wins over "<".
_OPERATORS = ("==", "!=", "<=", ">=", "&&", "||", "??", "?.", "**", "..",
              "<", ">", "!", "+", "-", "*", "/", "%", "^", "?", ":", ".", ",", "(", ")", "[",
              "]", "{", "}", "|", "#")

_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
                   "v": "\v", "\\": "\\", "'": "'", '"': '"'}


def _is_name_start(char: str) -> bool:
    return char == "_" or char == "$" or char.isalpha()


def _is_name_char(char: str) -> bool:
    return char == "_" or char == "$" or char.isalnum()


def tokenize(source: str) -> list[Token]:
    """The tokens of an expr-lang expression, ending with an EOF token."""
    tokens: list[Token] = []
    i = 0
    n = len(source)
    while i < n:
        char = source[i]
        if char.isspace():
            i += 1
            continue
        start = i
        if char.isdigit() or (char == "." and i + 1 < n and source[i + 1].isdigit()):
            i = _scan_number(source, i)
            text = source[start:i]
            tokens.append(Token(TokenKind.NUMBER, text, _number_value(text, source, start), start))
        elif _is_name_start(char):
            while i < n and _is_name_char(source[i]):
                i += 1
            text = source[start:i]
            tokens.append(Token(TokenKind.NAME, text, text, start))
        elif char in "'\"`":
            value, i = _scan_string(source, i)
            tokens.append(Token(TokenKind.STRING, source[start:i], value, start))
        else:
            for op in _OPERATORS:
                if source.startswith(op, i):
                    break
            else:
                raise ExprSyntaxError(f"unexpected character {char!r}", source, i)
            i += len(op)
            tokens.append(Token(TokenKind.OP, op, op, start))
    tokens.append(Token(TokenKind.EOF, "", None, n))
    return tokens


def _scan_number(source: str, i: int) -> int:
    n = len(source)
    if source.startswith(("0x", "0X"), i):
        i += 2
        while i < n and (source[i] in "0123456789abcdefABCDEF_"):
            i += 1
        return i
    while i < n and (source[i].isdigit() or source[i] == "_"):
        i += 1
    # A fraction, but not the start of a "..": range or a method call on an integer.
    if i < n and source[i] == "." and not source.startswith("..", i) \
            and (i + 1 >= n or not _is_name_start(source[i + 1])):
        i += 1
        while i < n and (source[i].isdigit() or source[i] == "_"):
            i += 1
    if i < n and source[i] in "eE":
        j = i + 1
        if j < n and source[j] in "+-":
            j += 1
        if j < n and source[j].isdigit():
            i = j
            while i < n and source[i].isdigit():
                i += 1
    return i


def _number_value(text: str, source: str, position: int) -> int | float:
    clean = text.replace("_", "")
    try:
        if clean.lower().startswith("0x"):
            return int(clean, 16)
        if any(c in clean for c in ".eE"):
            return float(clean)
        return int(clean, 10)
    except ValueError:
        raise ExprSyntaxError(f"invalid number {text!r}", source, position) from None


def _scan_string(source: str, i: int) -> tuple[str, int]:
    """Decode the string literal starting at i; returns (value, index after it)."""
    quote = source[i]
    start = i
    i += 1
    n = len(source)
    if quote == "`":  # raw string: no escapes
        end = source.find("`", i)
        if end < 0:
            raise ExprSyntaxError("unterminated string literal", source, start)
        return source[i:end], end + 1
    out: list[str] = []
    while i < n:
        char = source[i]
        if char == quote:
            return "".join(out), i + 1
        if char == "\n":
            break
        if char != "\\":
            out.append(char)
            i += 1
            continue
        if i + 1 >= n:
            break
        esc = source[i + 1]
        if esc in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[esc])
            i += 2
        elif esc in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[esc]
            digits = source[i + 2:i + 2 + width]
            if len(digits) != width or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise ExprSyntaxError(f"invalid escape \\{esc}{digits}", source, i)
            code = int(digits, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise ExprSyntaxError(f"escape \\{esc}{digits} is not a valid character",
                                      source, i)
            out.append(chr(code))
            i += 2 + width
        elif esc in "01234567":
            digits = source[i + 1:i + 4]
            if len(digits) != 3 or any(c not in "01234567" for c in digits) or int(digits, 8) > 255:
                raise ExprSyntaxError(f"invalid octal escape \\{digits}", source, i)
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            raise ExprSyntaxError(f"unknown escape sequence \\{esc}", source, i)
    raise ExprSyntaxError("unterminated string literal", source, start)


# --- syntax tree --------------------------------------------------------------------------

@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Name:
    name: str


@dataclass(frozen=True)
class Unary:
    op: str           # "!", "-", "+"
    operand: "Node"


@dataclass(frozen=True)
class Binary:
    op: str           # canonical: "||", "&&", "==", "in", "not in", "contains", "+", ...
    left: "Node"
    right: "Node"


@dataclass(frozen=True)
class Conditional:
    condition: "Node"
    then: "Node"
    otherwise: "Node"


@dataclass(frozen=True)
class Attribute:
    target: "Node"
    name: str


@dataclass(frozen=True)
class Index:
    target: "Node"
    index: "Node"


@dataclass(frozen=True)
class Call:
    callee: "Node"
    arguments: tuple["Node", ...]


@dataclass(frozen=True)
class Builtin:
    name: str         # only "len"
    arguments: tuple["Node", ...]


@dataclass(frozen=True)
class ListLiteral:
    items: tuple["Node", ...]


@dataclass(frozen=True)
class MapLiteral:
    items: tuple[tuple["Node", "Node"], ...]


Node = (Literal | Name | Unary | Binary | Conditional | Attribute | Index | Call | Builtin
        | ListLiteral | MapLiteral)

_BINARY_PRECEDENCE = {
    "||": 10, "or": 10,
    "&&": 15, "and": 15,
    "==": 20, "!=": 20, "<": 20, ">": 20, "<=": 20, ">=": 20, "in": 20, "contains": 20,
    "+": 30, "-": 30,
    "*": 60, "/": 60, "%": 60,
}
_CANONICAL = {"or": "||", "and": "&&"}
_UNARY_PRECEDENCE = {"!": 50, "not": 50, "-": 90, "+": 90}
_BOOLEAN_OPS = frozenset({"||", "&&", "==", "!=", "<", ">", "<=", ">=", "in", "not in",
                          "contains", "not contains"})
_BUILTINS = frozenset({"len"})


class _Parser:
    """Recursive descent with precedence climbing, after expr-lang's parser."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = tokenize(source)
        self.index = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def peek(self, offset: int = 1) -> Token:
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind is not TokenKind.EOF:
            self.index += 1
        return token

    def error(self, reason: str, token: Token | None = None) -> ExprSyntaxError:
        token = token or self.current
        return ExprSyntaxError(reason, self.source, token.position)

    def unexpected(self, token: Token | None = None) -> ExprSyntaxError:
        token = token or self.current
        if token.kind is TokenKind.EOF:
            return self.error("unexpected end of expression", token)
        if token.kind is TokenKind.OP and token.text in _UNSUPPORTED_OPS:
            return self.error(f"operator {token.text!r} is not supported", token)
        if token.kind is TokenKind.NAME and token.text in _UNSUPPORTED_WORDS:
            return self.error(f"operator {token.text!r} is not supported", token)
        return self.error(f"unexpected {token.kind.value} {token.text!r}", token)

    def expect(self, op: str) -> Token:
        token = self.current
        if token.kind is TokenKind.OP and token.text == op:
            return self.advance()
        if token.kind is TokenKind.EOF:
            raise self.error(f"expected {op!r} before the end of the expression", token)
        raise self.error(f"expected {op!r}, found {token.text!r}", token)

    def is_op(self, token: Token, *ops: str) -> bool:
        return token.kind is TokenKind.OP and token.text in ops

    # grammar

    def parse(self) -> Node:
        if self.current.kind is TokenKind.EOF:
            raise self.error("empty expression")
        node = self.expression(0)
        if self.current.kind is not TokenKind.EOF:
            raise self.unexpected()
        return node

    def binary_operator(self) -> tuple[str, int, int] | None:
        """(canonical operator, precedence, tokens it spans) at the current token, if any."""
        token = self.current
        if token.kind is TokenKind.OP and token.text in _BINARY_PRECEDENCE:
            return token.text, _BINARY_PRECEDENCE[token.text], 1
        if token.kind is TokenKind.NAME:
            if token.text in ("in", "contains", "and", "or"):
                return _CANONICAL.get(token.text, token.text), _BINARY_PRECEDENCE[token.text], 1
            nxt = self.peek()
            if token.text == "not" and nxt.kind is TokenKind.NAME and nxt.text in ("in", "contains"):
                return f"not {nxt.text}", 20, 2
        return None

    def expression(self, min_precedence: int) -> Node:
        node = self.unary()
        while True:
            found = self.binary_operator()
            if found is None or found[1] < min_precedence:
                break
            op, precedence, width = found
            for _ in range(width):
                self.advance()
            right = self.expression(precedence + 1)
            node = Binary(op, node, right)
        if min_precedence == 0 and self.is_op(self.current, "?"):
            node = self.conditional(node)
        return node

    def conditional(self, condition: Node) -> Node:
        self.expect("?")
        if self.is_op(self.current, ":"):
            raise self.error("the short form 'a ?: b' is not supported")
        then = self.expression(0)
        self.expect(":")
        otherwise = self.expression(0)
        return Conditional(condition, then, otherwise)

    def unary(self) -> Node:
        token = self.current
        if (token.kind is TokenKind.OP and token.text in ("!", "-", "+")) or \
                (token.kind is TokenKind.NAME and token.text == "not"):
            self.advance()
            operand = self.expression(_UNARY_PRECEDENCE[token.text])
            return Unary("!" if token.text == "not" else token.text, operand)
        return self.postfix(self.primary())

    def primary(self) -> Node:
        token = self.current
        if token.kind is TokenKind.NUMBER or token.kind is TokenKind.STRING:
            self.advance()
            return Literal(token.value)
        if token.kind is TokenKind.NAME:
            if token.text in _UNSUPPORTED_WORDS or token.text in ("in", "contains", "and", "or"):
                raise self.unexpected()
            self.advance()
            if token.text == "true":
                return Literal(True)
            if token.text == "false":
                return Literal(False)
            if token.text == "nil":
                return Literal(None)
            if token.text in _BUILTINS and self.is_op(self.current, "("):
                arguments = self.arguments()
                if len(arguments) != 1:
                    raise self.error(f"{token.text}() takes exactly one argument, "
                                     f"got {len(arguments)}", token)
                return Builtin(token.text, arguments)
            return Name(token.text)
        if self.is_op(token, "("):
            self.advance()
            node = self.expression(0)
            self.expect(")")
            return node
        if self.is_op(token, "["):
            self.advance()
            items: list[Node] = []
            while not self.is_op(self.current, "]"):
                items.append(self.expression(0))
                if not self.is_op(self.current, ","):
                    break
                self.advance()
            self.expect("]")
            return ListLiteral(tuple(items))
        if self.is_op(token, "{"):
            return self.map_literal()
        raise self.unexpected()

    def map_literal(self) -> Node:
        self.expect("{")
        pairs: list[tuple[Node, Node]] = []
        while not self.is_op(self.current, "}"):
            key_token = self.current
            if key_token.kind in (TokenKind.STRING, TokenKind.NUMBER):
                self.advance()
                key: Node = Literal(key_token.value)
            elif key_token.kind is TokenKind.NAME:
                self.advance()
                key = Literal(key_token.text)   # {a: 1} means the key "a", as in expr-lang
            elif self.is_op(key_token, "("):
                self.advance()
                key = self.expression(0)
                self.expect(")")
            else:
                raise self.unexpected()
            self.expect(":")
            pairs.append((key, self.expression(0)))
            if not self.is_op(self.current, ","):
                break
            self.advance()
        self.expect("}")
        return MapLiteral(tuple(pairs))

    def arguments(self) -> tuple[Node, ...]:
        self.expect("(")
        arguments: list[Node] = []
        while not self.is_op(self.current, ")"):
            arguments.append(self.expression(0))
            if not self.is_op(self.current, ","):
                break
            self.advance()
        self.expect(")")
        return tuple(arguments)

    def postfix(self, node: Node) -> Node:
        while True:
            token = self.current
            if self.is_op(token, "."):
                self.advance()
                name = self.current
                if name.kind is not TokenKind.NAME:
                    raise self.error("expected a name after '.'", name)
                self.advance()
                node = Attribute(node, name.text)
            elif self.is_op(token, "("):
                node = Call(node, self.arguments())
            elif self.is_op(token, "["):
                self.advance()
                if self.is_op(self.current, ":"):
                    raise self.error("slices are not supported")
                index = self.expression(0)
                if self.is_op(self.current, ":"):
                    raise self.error("slices are not supported")
                self.expect("]")
                node = Index(node, index)
            else:
                return node


def parse(source: str) -> Node:
    """The syntax tree of an expr-lang expression; ExprSyntaxError if it is not one."""
    return _Parser(source).parse()


# --- Jinja2 output ------------------------------------------------------------------------

def jinja_string(value: str) -> str:
    """A Jinja2 string literal for value (Jinja2 decodes literals as Python escapes)."""
    out = ["'"]
    for char in value:
        code = ord(char)
        if char == "\\":
            out.append("\\\\")
        elif char == "'":
            out.append("\\'")
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append("'")
    return "".join(out)


def _is_jinja_name(name: str) -> bool:
    return name.isidentifier() and name not in _JINJA_RESERVED and not name.startswith("__")


def _is_boolean(node: Node) -> bool:
    """Whether node is statically a boolean (so no runtime check is needed)."""
    if isinstance(node, Literal):
        return isinstance(node.value, bool)
    if isinstance(node, Binary):
        return node.op in _BOOLEAN_OPS
    if isinstance(node, Unary):
        return node.op == "!"
    if isinstance(node, Conditional):
        return _is_boolean(node.then) and _is_boolean(node.otherwise)
    return False


class _Emitter:
    def __init__(self) -> None:
        self.names: dict[str, None] = {}   # free identifiers, in order of first use

    def boolean(self, node: Node, operator: str) -> str:
        text = self.emit(node)
        return text if _is_boolean(node) else f"{BOOL}({text}, {jinja_string(operator)})"

    def emit(self, node: Node) -> str:
        if isinstance(node, Literal):
            value = node.value
            if value is None or isinstance(value, bool):
                return repr(value)
            if isinstance(value, str):
                return jinja_string(value)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"number {value} is out of range")
            return repr(value)
        if isinstance(node, Name):
            self.names.setdefault(node.name, None)
            if _is_jinja_name(node.name):
                return node.name
            return f"{VAR}({jinja_string(node.name)})"
        if isinstance(node, Unary):
            if node.op == "!":
                return f"(not {self.boolean(node.operand, '!')})"
            return f"({node.op}{self.emit(node.operand)})"
        if isinstance(node, Binary):
            return self.binary(node)
        if isinstance(node, Conditional):
            condition = self.boolean(node.condition, "?:")   # source order, for self.names
            then = self.emit(node.then)
            return f"({then} if {condition} else {self.emit(node.otherwise)})"
        if isinstance(node, Attribute):
            target = self.emit(node.target)
            if node.name.isidentifier() and node.name not in _JINJA_RESERVED:
                return f"{target}.{node.name}"
            return f"{target}[{jinja_string(node.name)}]"
        if isinstance(node, Index):
            return f"{self.emit(node.target)}[{self.emit(node.index)}]"
        if isinstance(node, Call):
            callee = self.emit(node.callee)
            return f"{callee}({', '.join(self.emit(a) for a in node.arguments)})"
        if isinstance(node, Builtin):
            return f"{LEN}({self.emit(node.arguments[0])})"
        if isinstance(node, ListLiteral):
            items = ", ".join(self.emit(item) for item in node.items)
            return f"[{items}]"
        if isinstance(node, MapLiteral):
            pairs = ", ".join(f"{self.emit(k)}: {self.emit(v)}" for k, v in node.items)
            return "{" + pairs + "}"
        raise TypeError(f"unknown expression node {node!r}")

    def binary(self, node: Binary) -> str:
        op = node.op
        if op in ("&&", "||"):
            word = "and" if op == "&&" else "or"
            return f"({self.boolean(node.left, op)} {word} {self.boolean(node.right, op)})"
        left = self.emit(node.left)
        right = self.emit(node.right)
        if op == "+":
            return f"{ADD}({left}, {right})"
        if op in ("-", "*", "/", "%"):
            return f"{ARITH}({jinja_string(op)}, {left}, {right})"
        if op == "contains":
            return f"{CONTAINS}({left}, {right})"
        if op == "not contains":
            return f"(not {CONTAINS}({left}, {right}))"
        return f"({left} {op} {right})"   # == != < > <= >= in, not in


@dataclass(frozen=True)
class Translation:
    """An expression translated: the Jinja2 text and the identifiers it reads."""

    source: str
    jinja: str
    names: tuple[str, ...]       # free identifiers (variables, namespaces), first use first
    bare_name: str | None        # set when the whole expression is one identifier


MAX_NESTING = 40  # levels of operators, calls and brackets; Jinja2 and Python's compiler
# overflow their stacks on deeper expressions, and no template comes close


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Conditional):
        return (node.condition, node.then, node.otherwise)
    if isinstance(node, Attribute):
        return (node.target,)
    if isinstance(node, Index):
        return (node.target, node.index)
    if isinstance(node, Call):
        return (node.callee, *node.arguments)
    if isinstance(node, (Builtin, ListLiteral)):
        return node.arguments if isinstance(node, Builtin) else node.items
    if isinstance(node, MapLiteral):
        return tuple(part for pair in node.items for part in pair)
    return ()


def _depth(tree: Node) -> int:
    """How deep the tree nests, walked without recursion."""
    deepest, pending = 0, [(tree, 1)]
    while pending:
        node, level = pending.pop()
        deepest = max(deepest, level)
        pending.extend((child, level + 1) for child in _children(node))
    return deepest


def analyse(source: str) -> Translation:
    """Parse and translate one tag body; ExprSyntaxError if expr-lang would not compile it."""
    try:
        tree = parse(source)
    except RecursionError:
        raise ExprSyntaxError(f"the expression nests deeper than {MAX_NESTING} levels",
                              source, 0) from None
    if _depth(tree) > MAX_NESTING:
        raise ExprSyntaxError(f"the expression nests deeper than {MAX_NESTING} levels",
                              source, 0)
    emitter = _Emitter()
    try:
        jinja = emitter.emit(tree)
    except ValueError as error:
        raise ExprSyntaxError(str(error), source, 0) from None
    return Translation(source=source, jinja=jinja, names=tuple(emitter.names),
                       bare_name=tree.name if isinstance(tree, Name) else None)


def translate(source: str) -> str:
    """The Jinja2 expression for an expr-lang expression (see the module docstring)."""
    return analyse(source).jinja


# --- runtime helpers (what the translation calls) ------------------------------------------

def type_name(value: Any) -> str:
    """The Go-flavoured name of a value's type, for error messages."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "map"
    return type(value).__name__


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def add(left: Any, right: Any) -> Any:
    """AliECS's `+`: nil counts as "", strings concatenate, numbers add."""
    a = "" if left is None else left
    b = "" if right is None else right
    if isinstance(a, str) and isinstance(b, str):
        return a + b
    if _is_number(a) and _is_number(b):
        return a + b
    raise TypeError(f"invalid operation: {type_name(left)} + {type_name(right)} "
                    f"(+ joins strings, with nil as \"\", or adds numbers)")


def arithmetic(op: str, left: Any, right: Any) -> Any:
    """`-`, `*`, `/`, `%` on numbers only, as expr-lang allows them."""
    if not (_is_number(left) and _is_number(right)):
        raise TypeError(f"invalid operation: {type_name(left)} {op} {type_name(right)} "
                        f"({op} needs numbers)")
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if op == "/":
        if right == 0:
            raise ZeroDivisionError("division by zero")
        return left / right
    if isinstance(left, float) or isinstance(right, float):
        raise TypeError(f"invalid operation: {type_name(left)} % {type_name(right)} "
                        f"(% needs integers)")
    if right == 0:
        raise ZeroDivisionError("integer divide by zero")
    remainder = abs(left) % abs(right)   # Go's %: the sign follows the dividend
    return remainder if left >= 0 else -remainder


def boolean(value: Any, operator: str) -> bool:
    """The operand of a boolean operator: must be a bool, as in expr-lang."""
    if isinstance(value, bool):
        return value
    hint = " (compare it, e.g. x == 'true')" if isinstance(value, str) else ""
    raise TypeError(f"{operator} needs a bool, got {type_name(value)} {_short(value)}{hint}")


def contains(container: Any, item: Any) -> bool:
    """`a contains b`: substring of a string, or member of a list or map."""
    if isinstance(container, str) and isinstance(item, str):
        return item in container
    if isinstance(container, (list, tuple, dict)):
        try:
            return item in container
        except TypeError:   # an unhashable item is in no map
            return False
    raise TypeError(f"invalid operation: {type_name(container)} contains {type_name(item)}")


def length(value: Any) -> int:
    """expr-lang's len(): characters of a string, items of a list or map."""
    if isinstance(value, (str, list, tuple, dict)):
        return len(value)
    raise TypeError(f"invalid argument for len (type {type_name(value)})")


@pass_context
def variable(context: Context, name: str) -> Any:
    """The value of an identifier that cannot be spelled as a Jinja2 name (`none`, `a$b`)."""
    lookup: Callable[[str], Any] = context.parent.lookup   # the renderer's scope
    return lookup(name)


def _short(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


OPERATOR_HELPERS: dict[str, Callable[..., Any]] = {
    ADD: add, ARITH: arithmetic, BOOL: boolean, CONTAINS: contains, LEN: length, VAR: variable,
}

