"""Keeping secrets out of what people see: one rule for what a secret is called.

A name is secret when one of its words (split at `_ - .` and camelCase) is
TOKEN, SECRET, PASSWORD, PASSWD, PASSPHRASE, CREDENTIAL(S), KEY(S), APIKEY,
PRIVATEKEY, AUTHORIZATION or BEARER, in any case: OCC_CONTROL_TOKEN,
NUTSHELL_TOKEN, db_password, apiKey, AWS_SECRET_ACCESS_KEY. Every place that
shows an environment, a command line, variables or metadata to an operator (or
writes them to a log or the store) passes them through here; a task's own
process still gets the real values.

It lives in the executor package because both sides use it (the engine imports
the executor's records already; the executor imports nothing of the engine).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

REDACTED = "***"

SECRET_WORDS = frozenset({
    "TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "CREDENTIAL", "KEY", "APIKEY",
    "PRIVATEKEY", "AUTHORIZATION", "BEARER",
})

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[^A-Za-z0-9]+")


def _words(name: str) -> list[str]:
    return [word.upper() for word in _SEPARATORS.split(_CAMEL.sub("_", name)) if word]


def is_secret_name(name: str) -> bool:
    """Whether a variable, option or metadata key of this name holds a secret."""
    for word in _words(name):
        if word in SECRET_WORDS or (word.endswith("S") and word[:-1] in SECRET_WORDS):
            return True
    return False


def redact_mapping(values: Mapping[str, str]) -> dict[str, str]:
    """`values` with every secret-named value replaced by REDACTED."""
    return {key: (REDACTED if is_secret_name(key) else value) for key, value in values.items()}


def redact_env(entries: Iterable[str]) -> list[str]:
    """NAME=VALUE entries with the value of every secret NAME replaced."""
    out: list[str] = []
    for entry in entries:
        name, sep, _ = entry.partition("=")
        out.append(f"{name}={REDACTED}" if sep and is_secret_name(name) else entry)
    return out


def _option_name(word: str) -> str:
    return word.lstrip("-").partition("=")[0]


def redact_argv(argv: Iterable[str]) -> list[str]:
    """A command line as it may be shown: `--password=x`, `--password x`, `-token x` and
    `NAME=x` (an env assignment, a key=value argument) lose their secret value.
    Each word is also split at spaces, so a `sh -c "…"` line is covered."""
    out: list[str] = []
    for item in argv:
        out.append(" ".join(_redact_words(item.split(" "))) if " " in item
                   else _redact_words([item])[0])
    # an option word and its value may be separate items
    for index in range(len(out) - 1):
        word = out[index]
        if word.startswith("-") and "=" not in word and is_secret_name(_option_name(word)):
            out[index + 1] = REDACTED
    return out


def _redact_words(words: list[str]) -> list[str]:
    out = list(words)
    for index, word in enumerate(out):
        name, sep, value = word.partition("=")
        if sep and value and is_secret_name(_option_name(name)):
            out[index] = f"{name}={REDACTED}"
        elif (word.startswith("-") and not sep and index + 1 < len(out)
              and is_secret_name(_option_name(word))):
            out[index + 1] = REDACTED
    return out


def without_secrets(environ: Mapping[str, str]) -> dict[str, str]:
    """The entries of `environ` whose names are not secret: what a child may inherit
    from a parent whose own credentials are not the child's business."""
    return {name: value for name, value in environ.items() if not is_secret_name(name)}


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each (non-empty) secret value replaced."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text
