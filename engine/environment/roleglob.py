"""Role path globs as AliECS's GetRoles takes them (gobwas/glob with `.` as separator).

`*` matches within one path element, `**` across elements, `?` one character of
an element, `[abc]` / `[a-z]` / `[!abc]` a class, `{a,b}` alternatives (each a
glob itself) and `\\` escapes the next character. The whole path must match.
"""
from __future__ import annotations

import re
from functools import lru_cache

SEPARATOR = "."
_NOT_SEPARATOR = f"[^{re.escape(SEPARATOR)}]"


class RoleGlobError(ValueError):
    """A malformed glob; the message quotes it and says what is wrong."""


class _Translator:
    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.at = 0

    def fail(self, what: str) -> RoleGlobError:
        return RoleGlobError(f"role path glob {self.pattern!r}: {what} at character {self.at + 1}")

    def translate(self, inside_braces: bool = False) -> str:
        """Regex text up to the end (or, inside braces, up to a `,` or `}` left unread)."""
        out: list[str] = []
        text = self.pattern
        while self.at < len(text):
            char = text[self.at]
            if inside_braces and char in ",}":
                return "".join(out)
            self.at += 1
            if char == "\\":
                if self.at >= len(text):
                    raise self.fail("a trailing backslash escapes nothing")
                out.append(re.escape(text[self.at]))
                self.at += 1
            elif char == "*":
                if text.startswith("*", self.at):
                    self.at += 1
                    out.append(".*")
                else:
                    out.append(f"{_NOT_SEPARATOR}*")
            elif char == "?":
                out.append(_NOT_SEPARATOR)
            elif char == "[":
                out.append(self._class())
            elif char == "{":
                out.append(self._alternatives())
            elif char == "}":
                raise self.fail("'}' without '{'")
            else:
                out.append(re.escape(char))
        if inside_braces:
            raise self.fail("'{' is never closed")
        return "".join(out)

    def _class(self) -> str:
        text = self.pattern
        end = text.find("]", self.at + 1 if text.startswith(("!", "]"), self.at) else self.at)
        if end < 0:
            raise self.fail("'[' is never closed")
        body = text[self.at:end]
        self.at = end + 1
        negated = body.startswith("!")
        if negated:
            body = body[1:]
        if not body:
            raise self.fail("an empty character class")
        items = body.replace("\\", "\\\\").replace("^", "\\^").replace("[", "\\[")
        # A negated class never matches the separator: it stays within one element.
        return f"[^{items}{re.escape(SEPARATOR)}]" if negated else f"[{items}]"

    def _alternatives(self) -> str:
        options: list[str] = []
        while True:
            options.append(self.translate(inside_braces=True))
            if self.at >= len(self.pattern):
                raise self.fail("'{' is never closed")
            closing = self.pattern[self.at] == "}"
            self.at += 1
            if closing:
                return "(?:" + "|".join(options) + ")"


@lru_cache(maxsize=256)
def compile_role_glob(pattern: str) -> re.Pattern[str]:
    """The compiled glob; RoleGlobError names what is malformed."""
    try:
        return re.compile(_Translator(pattern).translate() + r"\Z", re.DOTALL)
    except re.error as error:
        raise RoleGlobError(f"role path glob {pattern!r}: {error}") from None


def matches(pattern: str, path: str) -> bool:
    return compile_role_glob(pattern).match(path) is not None
