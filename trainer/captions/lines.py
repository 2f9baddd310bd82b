"""Stream caption lines through a filter: one line out per line in, written chunk by chunk as it goes.

A line is a record ended by ``\\n`` and by nothing else: `str.splitlines` also splits on form feed, a lone
CR, U+001C-U+001E, U+0085 and U+2028/U+2029, which would shift every later caption against its input.
A ``\\r`` right before the ``\\n`` (a CRLF file) is part of the line ending: it is not filtered and is written
back, so a CRLF file stays CRLF. The last line may lack its ``\\n``; its output lacks it too.

Lines that cannot be filtered are copied unchanged (plain output) or written as
``{"text": null, "original": null, "removed": [], "error": ...}`` (``--json``), with a warning naming the line,
so every other line is still filtered and line N of the output still answers line N of the input:
- not valid UTF-8;
- longer than `MAX_LINE_BYTES` (spaCy needs about 3.4 GB for a 1 MB line; a caption is a sentence or two,
  and CLIP reads 77 tokens). Such a line is copied in pieces, never held whole in memory.

Memory stays flat: at most `CHUNK_LINES` lines are held, filtered and written (then flushed) at a time;
when the input pauses (a pipe or a terminal: nothing new for `PAUSE_SECONDS`), what has arrived is filtered
and written at once.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable, Iterator

MAX_LINE_BYTES = 10_000
# 20,000 = the filter's AUTO_WORKERS_MIN_CAPTIONS: a full chunk is big enough for the filter to use its
# helper processes, and one chunk's captions and results stay in tens of MB.
CHUNK_LINES = 20_000
READ_BYTES = 1 << 16
# The input has paused when nothing arrives for this long: a fast writer (`cat big.txt |`) refills a pipe well
# within it, so chunks still fill up (and get helper processes); a person typing gets the answer at once.
PAUSE_SECONDS = 0.1
# JSON escapes the control characters but writes these raw under ensure_ascii=False; escaped, a reader
# that splits on them too (Python's str.splitlines) still sees one record per line.
_JSON_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


@dataclass
class Line:
    """One input line (or, for a line over the limit, one piece of it) and how it ended."""

    number: int  # 1-based line number in the input
    raw: bytes  # without its ending
    ending: bytes  # b"\n", b"\r\n", or b"" (last line without a newline; an overlong line's inner pieces)
    text: str | None = None  # the decoded caption, when it can be filtered
    problem: str | None = None  # why it is copied unchanged instead
    first: bool = True  # False for the 2nd.. pieces of an overlong line
    last: bool = True  # False for all but the last piece of an overlong line


def _reads(stream) -> Iterator[bytes | None]:
    """The input's bytes as they arrive; None when it pauses (nothing more readable right now)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # an in-memory stream
        fd = None
    while True:
        data = os.read(fd, READ_BYTES) if fd is not None else stream.read(READ_BYTES)
        if not data:
            return
        yield data
        if fd is not None and not _readable(fd):
            yield None


def _readable(fd: int) -> bool:
    """True when more input (or its end) arrives within `PAUSE_SECONDS`."""
    import select

    try:
        return bool(select.select([fd], [], [], PAUSE_SECONDS)[0])
    except (OSError, ValueError):  # Windows: select works on sockets only; read on, chunks just fill up
        return True


def _line(number: int, raw: bytes, ending: bytes, max_bytes: int) -> Line:
    if raw.endswith(b"\r") and ending == b"\n":
        raw, ending = raw[:-1], b"\r\n"
    if len(raw) > max_bytes:
        return Line(number, raw, ending, problem=f"longer than {max_bytes:,} bytes")
    try:
        return Line(number, raw, ending, text=raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        return Line(number, raw, ending, problem=f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at byte {e.start + 1})")


def read_lines(stream, max_bytes: int = MAX_LINE_BYTES) -> Iterator[Line | None]:
    """The `\\n`-separated lines of a binary stream; None where the input pauses.

    A line over `max_bytes` comes as pieces (`first`/`last`), the first with its `problem` set."""
    buf = bytearray()
    number = 0
    long_line = False  # inside a line over the limit: pieces go straight out
    for data in _reads(stream):
        if data is None:
            yield None
            continue
        buf += data
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            raw = bytes(buf[start:nl])
            start = nl + 1
            if long_line:
                long_line = False
                yield Line(number, raw, b"\n", first=False)
            else:
                number += 1
                yield _line(number, raw, b"\n", max_bytes)
        del buf[:start]
        if buf and (long_line or len(buf) > max_bytes):  # no newline in sight: pass the piece on, hold nothing
            if not long_line:
                number += 1
            yield Line(number, bytes(buf), b"", problem=None if long_line else f"longer than {max_bytes:,} bytes",
                       first=not long_line, last=False)
            long_line = True
            buf.clear()
    if long_line:
        yield Line(number, bytes(buf), b"", first=False)
    elif buf:
        yield _line(number + 1, bytes(buf), b"", max_bytes)


def _json(obj) -> str:
    return json.dumps(obj, ensure_ascii=False).translate(_JSON_LINE_BREAKS)


class LineFilter:
    """Filter lines from a binary input to a binary output, a chunk at a time, flushing after each chunk.

    `filter_texts(texts)` returns one result (`.text`, `.to_json()`) per text, in order. `warn(message)`
    reports a line copied unchanged. `written` counts the lines fully written so far (for an interrupt's message).
    """

    def __init__(self, filter_texts: Callable, out, *, json_lines: bool = False, warn: Callable = print,
                 chunk_lines: int = CHUNK_LINES, max_bytes: int = MAX_LINE_BYTES):
        self.filter_texts, self.out, self.json_lines, self.warn = filter_texts, out, json_lines, warn
        self.chunk_lines, self.max_bytes = chunk_lines, max_bytes
        self.written = 0
        self.writing = self.interrupted = False
        self.unfiltered: list[int] = []  # line numbers copied unchanged

    def run(self, stream) -> None:
        """Read `stream` to its end, writing each line's result in order."""
        chunk: list[Line] = []
        for line in read_lines(stream, self.max_bytes):
            if line is None:  # the input paused: answer what has arrived
                self._flush(chunk)
            elif not (line.first and line.last):  # a piece of an overlong line: straight through
                self._flush(chunk)
                self._piece(line)
            else:
                chunk.append(line)
                if len(chunk) >= self.chunk_lines:
                    self._flush(chunk)
        self._flush(chunk)

    def _note(self, line: Line) -> None:
        self.unfiltered.append(line.number)
        self.warn(f"line {line.number}: {line.problem}; copied unchanged, not filtered")

    def _unfiltered_json(self, line: Line) -> bytes:
        return json.dumps({"text": None, "original": None, "removed": [],
                           "error": f"line {line.number}: {line.problem}; not filtered"}).encode()

    def _flush(self, chunk: list[Line]) -> None:
        if not chunk:
            return
        todo = [ln.text for ln in chunk if ln.text is not None and ln.text.strip()]
        results = iter(self.filter_texts(todo) if todo else ())
        parts = []
        for ln in chunk:
            if ln.problem:
                self._note(ln)
                body = self._unfiltered_json(ln) if self.json_lines else ln.raw
            elif not ln.text.strip():  # empty lines stay empty, so output line N answers input line N
                body = (_json({"text": ln.text, "original": ln.text, "removed": []}).encode("utf-8")
                        if self.json_lines else ln.raw)
            else:
                r = next(results)
                body = (_json(r.to_json()) if self.json_lines else r.text).encode("utf-8")
            parts.append(body + (ln.ending if not self.json_lines or not ln.ending else b"\n"))
        self._write(b"".join(parts), len(chunk))
        chunk.clear()

    def _piece(self, line: Line) -> None:
        if line.first:
            self._note(line)
        if self.json_lines:  # one JSON line for the whole overlong line, written once its end is seen
            if line.last:
                long = Line(line.number, b"", b"", problem=f"longer than {self.max_bytes:,} bytes")
                self._write(self._unfiltered_json(long) + (b"\n" if line.ending else b""), 1)
            return
        self._write(line.raw + line.ending, 1 if line.last else 0)

    def _write(self, data: bytes, lines: int) -> None:
        self.writing = True  # an interrupt now would cut a line in half: `on_interrupt` holds it until done
        try:
            self.out.write(data)
            self.out.flush()
            self.written += lines
        finally:
            self.writing = False
        if self.interrupted:
            raise KeyboardInterrupt

    def on_interrupt(self, signum=None, frame=None) -> None:
        """A SIGINT handler: raise KeyboardInterrupt, or, during a write, right after it."""
        self.interrupted = True
        if not self.writing:
            raise KeyboardInterrupt
