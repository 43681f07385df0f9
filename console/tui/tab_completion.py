"""Shell-like Tab on the console's command line.

Tab completes the longest common prefix of what the shell's completer offers for the word
before the cursor (console.shell.completion.CommandCompleter); when that adds nothing and
there are several, Tab and shift+tab cycle through them, listed in a one-line hint under
the line (the current one highlighted). A single match completes fully, with a space.
The hint goes as soon as the line is changed by anything but Tab. The completer asks the
engine for ids and names: the asking is bounded (COMPLETION_TIMEOUT) and done in a worker,
so a slow engine costs a hint saying so, never a hung key or a frozen line.
"""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from rich.text import Text
from textual.widget import Widget
from textual.widgets import Input

from console.shell.completion import CommandCompleter

COMPLETION_TIMEOUT = 2.0  # seconds the engine gets to name what Tab may complete
SEPARATOR = "  "
ELLIPSIS = "…"
CURRENT_STYLE = "bold reverse"


@dataclass(frozen=True)
class Matches:
    """What the completer offers for the word before the cursor of `line`."""

    line: str
    cursor: int
    start: int  # where the word being completed begins
    words: tuple[str, ...]  # in the completer's order, without repeats

    @property
    def typed(self) -> str:
        return self.line[self.start:self.cursor]

    def put(self, word: str, suffix: str = "") -> tuple[str, int]:
        """The line with `word` (and `suffix`) in place of the typed word; the cursor after."""
        before = self.line[:self.start] + word + suffix
        return before + self.line[self.cursor:], len(before)


async def find_matches(completer: CommandCompleter, line: str, cursor: int,
                       timeout: float) -> Matches:
    """The completions at `cursor` (TimeoutError when the engine takes over `timeout` s)."""
    document = Document(line, cursor)
    words: list[str] = []
    before = line[:cursor]
    typed = before.split()[-1] if before[-1:].strip() else ""  # where none matches, the word
    start = cursor - len(typed)

    async def collect() -> None:
        nonlocal start
        async for completion in completer.get_completions_async(
                document, CompleteEvent(completion_requested=True)):
            start = cursor + completion.start_position
            if completion.text not in words:
                words.append(completion.text)

    await asyncio.wait_for(collect(), timeout)
    return Matches(line, cursor, start, tuple(words))


def hint_line(words: tuple[str, ...], current: int, width: int) -> Text:
    """The candidates on one line of `width` cells, `current` (-1: none) highlighted and in
    view; what does not fit is cut with an ellipsis at either end."""

    def length(first: int, last: int) -> int:
        size = sum(len(word) for word in words[first:last]) + len(SEPARATOR) * (last - first - 1)
        size += len(ELLIPSIS + SEPARATOR) if first > 0 else 0
        return size + (len(SEPARATOR + ELLIPSIS) if last < len(words) else 0)

    anchor = max(current, 0)
    first = 0
    while first < anchor and length(first, anchor + 1) > width:
        first += 1
    last = anchor + 1
    while last < len(words) and length(first, last + 1) <= width:
        last += 1
    text = Text(no_wrap=True, overflow="ellipsis")
    if first > 0:
        text.append(ELLIPSIS + SEPARATOR, style="dim")
    for index in range(first, last):
        if index > first:
            text.append(SEPARATOR)
        text.append(words[index], style=CURRENT_STYLE if index == current else "")
    if last < len(words):
        text.append(SEPARATOR + ELLIPSIS, style="dim")
    text.truncate(width, overflow="ellipsis")
    return text


class CompletionHint(Widget):
    """The line under the command line: Tab's candidates, or why there are none."""

    DEFAULT_CSS = """
    CompletionHint {
        height: 1;
        width: 100%;
        padding: 0 0 0 2;
        background: $panel;
        color: $text-muted;
        display: none;
    }
    """

    def __init__(self) -> None:
        super().__init__(id="completion-hint")
        self.words: tuple[str, ...] = ()
        self.current = -1
        self.message = ""

    def show(self, words: tuple[str, ...], current: int) -> None:
        self.words, self.current, self.message = words, current, ""
        self.display = True
        self.refresh()

    def say(self, message: str) -> None:
        self.words, self.current, self.message = (), -1, message
        self.display = True
        self.refresh()

    def clear(self) -> None:
        self.words, self.current, self.message = (), -1, ""
        self.display = False

    def render(self) -> Text:
        if self.message:
            return Text(self.message, style="italic", no_wrap=True, overflow="ellipsis")
        return hint_line(self.words, self.current, max(self.content_size.width, 1))

    @property
    def plain(self) -> str:
        """The hint as shown (empty when hidden)."""
        return self.render().plain if self.display else ""


@dataclass
class Cycle:
    """The candidates of the last Tab and the one on the line (-1: none yet)."""

    matches: Matches
    current: int = -1

    def step(self, step: int) -> str:
        count = len(self.matches.words)
        if self.current < 0:
            self.current = 0 if step > 0 else count - 1
        else:
            self.current = (self.current + step) % count
        return self.matches.words[self.current]


class TabCompletion:
    """Tab and shift+tab on `line`: the state between presses, the hint kept in step.

    `left` is the line as the last Tab left it: any other text (typing, history, a run)
    ends the cycle and takes the hint away (`changed`)."""

    def __init__(self, completer: CommandCompleter, line: Input, hint: CompletionHint) -> None:
        self.completer = completer
        self.line = line
        self.hint = hint
        self.timeout = COMPLETION_TIMEOUT
        self.cycle: Cycle | None = None
        self.left: str | None = None

    def cycling(self) -> bool:
        """Whether Tab goes on with the candidates already shown (no engine asked)."""
        return self.cycle is not None and self.line.value == self.left

    async def complete(self, step: int) -> None:
        """One press: step (1 forward, -1 back) through the candidates, or ask for them."""
        if self.cycle is not None and self.cycling():
            word = self.cycle.step(step)
            self._set(*self.cycle.matches.put(word))
            self.hint.show(self.cycle.matches.words, self.cycle.current)
            return
        line, cursor = self.line.value, self.line.cursor_position
        try:
            matches = await find_matches(self.completer, line, cursor, self.timeout)
        except TimeoutError:
            if self.line.value == line:
                self._say(f"the engine did not answer within {self.timeout:g} s: "
                          "nothing to complete; tab asks again")
            return
        except Exception as error:  # noqa: BLE001 - an engine out of reach: the line still works
            if self.line.value == line:
                self._say(f"no completion: {type(error).__name__}: {error}")
            return
        if self.line.value != line or self.line.cursor_position != cursor:
            return  # typed on meanwhile: this answer is for a line that is gone
        self._apply(matches, step)

    def _apply(self, matches: Matches, step: int) -> None:
        words = matches.words
        if not words:
            self._say(f"no match for {matches.typed}" if matches.typed.strip() else "no match")
            return
        if len(words) == 1:
            after = matches.line[matches.cursor:]
            self._set(*matches.put(words[0], "" if after[:1].isspace() else " "))
            self.cycle, self.left = None, None
            self.hint.clear()
            return
        self.cycle = Cycle(matches)
        prefix = os.path.commonprefix(list(words))
        if len(prefix) > len(matches.typed):
            self._set(*matches.put(prefix))
            self.hint.show(words, -1)
            # the candidates stand for the longer word too: the next Tab cycles at once
            self.cycle = Cycle(Matches(self.line.value, matches.start + len(prefix),
                                       matches.start, words))
            return
        self._set(*matches.put(self.cycle.step(step)))
        self.hint.show(words, self.cycle.current)

    def _set(self, value: str, cursor: int) -> None:
        self.line.value = value
        self.line.cursor_position = cursor
        self.left = value

    def _say(self, message: str) -> None:
        self.cycle = None
        self.left = self.line.value
        self.hint.say(message)

    def changed(self) -> None:
        """The line's text changed: unless Tab did it, the cycle and the hint are over."""
        if self.line.value != self.left:
            self.cycle, self.left = None, None
            self.hint.clear()
