"""Reading the tail of a task's sandbox log over an agent's `/files/read`, against a small
HTTP server that answers as a Mesos 1.11 agent does (tests/test_mesos_backend.py checks
its replies byte for byte against the real agent's): the end cases of paging back from
the end of a file, and that a large log costs only its tail."""
from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from engine.logtail import LOG_CHUNK, TaskLogError, tail
from engine.scheduler.mesos import sandbox_log
from engine.scheduler.mesos.sandbox_log import read_sandbox_log

FRAMEWORK = "fw-1"
TASK = "t-1"
SANDBOX = "/var/lib/mesos/slaves/a/frameworks/fw-1/executors/e/runs/r"
LOG = f"{SANDBOX}/{TASK}.log"
MESOS_READ_CAP = 16 * 4096  # the agent answers at most 16 pages a request
_SHORT_ESCAPES = {0x08: b"\\b", 0x09: b"\\t", 0x0A: b"\\n", 0x0C: b"\\f", 0x0D: b"\\r",
                  0x22: b'\\"', 0x5C: b"\\\\"}


def mesos_json_string(data: bytes) -> bytes:
    """A JSON string as a Mesos agent writes one: `"`, `\\` and control characters
    escaped, every other byte raw (not necessarily UTF-8)."""
    out = bytearray(b'"')
    for byte in data:
        if byte in _SHORT_ESCAPES:
            out += _SHORT_ESCAPES[byte]
        elif byte < 0x20:
            out += b"\\u%04X" % byte
        else:
            out.append(byte)
    return bytes(out + b'"')


def mesos_read_reply(data: bytes, offset: int) -> bytes:
    """The body of a `/files/read` answer, as the agent lays it out."""
    return b'{"data":' + mesos_json_string(data) + b',"offset":%d}' % offset


@dataclass
class FakeAgent:
    """The files of one sandbox, served as an agent serves `/state` and `/files/read`;
    `served` counts the file bytes it sent, `requests` the reads asked for."""

    files: dict[str, bytes] = field(default_factory=dict)
    cap: int = MESOS_READ_CAP
    size_claimed: int | None = None  # a size to report that the file no longer has
    served: int = 0
    requests: list[tuple[int, int | None]] = field(default_factory=list)
    endpoint: str = ""

    def state(self) -> bytes:
        executor = {"directory": SANDBOX, "tasks": [{"id": TASK}]}
        return json.dumps({"frameworks": [{"id": FRAMEWORK, "executors": [executor]}]}).encode()

    def read(self, query: dict[str, str]) -> tuple[int, bytes]:
        data = self.files.get(query.get("path", ""))
        if data is None:
            return 404, b""
        offset = int(query.get("offset", "-1"))
        length = int(query["length"]) if "length" in query else None
        self.requests.append((offset, length))
        if offset == -1:
            size = len(data) if self.size_claimed is None else self.size_claimed
            return 200, mesos_read_reply(b"", size)
        if offset < 0:
            return 400, b"Negative offset provided: %d.\n" % offset
        end = len(data) if length is None or length < 0 else offset + length
        chunk = data[offset:min(end, offset + self.cap)]
        self.served += len(chunk)
        return 200, mesos_read_reply(chunk, offset)


@pytest.fixture
def agent() -> Iterator[FakeAgent]:
    fake = FakeAgent()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            if url.path == "/state":
                status, body = 200, fake.state()
            elif url.path == "/files/read":
                status, body = fake.read(query)
            else:
                status, body = 404, b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    fake.endpoint = f"127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def read(agent: FakeAgent, lines: int) -> str:
    return read_sandbox_log("flp001", agent.endpoint, FRAMEWORK, TASK, lines)


def test_the_json_string_is_the_bytes_read_as_latin_1() -> None:
    every_byte = bytes(range(256))
    body = mesos_read_reply(every_byte, 7)
    document = json.loads(body.decode("latin-1"))
    assert document == {"data": every_byte.decode("latin-1"), "offset": 7}
    assert body.count(b"\\u") == 32 - 5  # the control characters without a short escape


@pytest.mark.parametrize("content, lines, expected", [
    (b"", 5, ""),
    (b"one\ntwo\nthree", 2, "two\nthree"),
    (b"one\ntwo\nthree\n", 2, "two\nthree\n"),
    (b"one\ntwo\n", 10, "one\ntwo\n"),
    (b"\n\n\n", 2, "\n\n"),
    (b"one\ntwo\n", 0, ""),
    ("caf\u00e9 \u2713\n\u65e5\u672c \U0001f600\n".encode(), 1, "\u65e5\u672c \U0001f600\n"),
    (b"bad \xff\xfe byte\nok\n", 2, "bad \ufffd\ufffd byte\nok\n"),
    (b"tab\tquote\" back\\slash \x00\x01\x7f\n", 1, "tab\tquote\" back\\slash \x00\x01\x7f\n"),
])
def test_the_last_lines_of_small_logs(agent: FakeAgent, content: bytes, lines: int,
                                      expected: str) -> None:
    agent.files[LOG] = content
    assert read(agent, lines) == expected


def test_a_line_longer_than_the_first_chunk_comes_whole(agent: FakeAgent) -> None:
    long_line = "\u00e9" * (LOG_CHUNK * 3) + "\n"  # 6 chunks of bytes, many agent requests
    agent.files[LOG] = ("head\n" * 1000 + "before\n" + long_line + "last\n").encode()
    assert read(agent, 2) == long_line + "last\n"
    assert read(agent, 3) == "before\n" + long_line + "last\n"
    assert all(length is None or length > 0 for _, length in agent.requests)


def test_a_character_cut_at_the_chunk_start_is_not_shown(agent: FakeAgent) -> None:
    """The first byte read falls inside a two-byte character of a line cut off there:
    that line is dropped, so no replacement character appears."""
    tail_lines = "".join(f"line {i}\n" for i in range(10))
    filler = "\u00e9" * LOG_CHUNK  # 2 bytes each: the chunk starts mid-character
    body = (filler + "\n" + tail_lines).encode()
    cut = len(body) - LOG_CHUNK
    assert body[cut - 1:cut + 1] == "\u00e9".encode()
    agent.files[LOG] = body
    assert read(agent, 5) == "".join(tail_lines.splitlines(keepends=True)[-5:])


@pytest.mark.parametrize("chunk, cap", [(7, 3), (5, 64), (1, 1), (16, 5)])
def test_paging_back_agrees_with_reading_the_file_from_its_end(
        agent: FakeAgent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        chunk: int, cap: int) -> None:
    """With tiny chunks and a tiny agent cap every boundary case comes up; the answer is
    always what reading the same bytes from a local file's end gives."""
    monkeypatch.setattr(sandbox_log, "LOG_CHUNK", chunk)
    agent.cap = cap
    contents = [b"", b"x", b"\n", b"a\nbb\nccc\n", b"a\nbb\nccc", b"\n\nx\n\n",
                "\u00e9\u00e9\n\u2713\n\U0001f600 end".encode(),
                b"".join(b"%d %s\n" % (i, b"y" * (i % 9)) for i in range(60))]
    for content in contents:
        local = tmp_path / "log"
        local.write_bytes(content)
        agent.files[LOG] = content
        for lines in (1, 2, 3, 7, 100):
            assert read(agent, lines) == tail(local, lines), (content, lines)


def test_a_large_log_costs_only_its_tail(agent: FakeAgent) -> None:
    """50 lines of a 20 MB log: the size, then one chunk from the end."""
    lines = [f"line {i:07d} {'x' * 40}\n" for i in range(400_000)]
    agent.files[LOG] = "".join(lines).encode()
    assert read(agent, 50) == "".join(lines[-50:])
    assert agent.served <= LOG_CHUNK
    assert len(agent.requests) == 2


def test_the_chunks_grow_until_they_hold_the_lines(agent: FakeAgent) -> None:
    lines = [f"line {i:07d} {'x' * 40}\n" for i in range(100_000)]  # 52 bytes each
    agent.files[LOG] = "".join(lines).encode()
    assert read(agent, 5000) == "".join(lines[-5000:])  # 260 kB: 64 KiB, then 256 KiB more
    assert agent.served == LOG_CHUNK * (1 + 4)


def test_errors_name_the_agent_the_endpoint_and_the_path(agent: FakeAgent) -> None:
    with pytest.raises(TaskLogError) as missing:
        read(agent, 5)
    assert "flp001" in str(missing.value) and agent.endpoint in str(missing.value)
    assert LOG in str(missing.value) and "HTTP 404" in str(missing.value)

    with pytest.raises(TaskLogError) as unknown:
        read_sandbox_log("flp001", agent.endpoint, "fw-other", TASK, 5)
    assert "no sandbox holding it" in str(unknown.value) and "fw-other" in str(unknown.value)

    agent.files[LOG] = b"short\n"
    agent.size_claimed = 10 * LOG_CHUNK  # the file shrank after its size was read
    with pytest.raises(TaskLogError) as shrunk:
        read(agent, 5)
    assert LOG in str(shrunk.value) and "truncated while being read" in str(shrunk.value)


def test_a_reply_that_is_not_file_data_is_an_error(agent: FakeAgent,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    agent.files[LOG] = b"x\n"
    monkeypatch.setattr(FakeAgent, "read", lambda self, query: (200, b"<html>login</html>"))
    with pytest.raises(TaskLogError) as error:
        read(agent, 5)
    assert "/files/read" in str(error.value) and LOG in str(error.value)
    assert "flp001" in str(error.value) and "login" in str(error.value)


def test_an_agent_that_does_not_answer_is_an_error_naming_it() -> None:
    from tests.conftest import free_port

    endpoint = f"127.0.0.1:{free_port()}"
    with pytest.raises(TaskLogError) as error:
        read_sandbox_log("flp009", endpoint, FRAMEWORK, TASK, 5)
    assert "flp009" in str(error.value) and endpoint in str(error.value)
