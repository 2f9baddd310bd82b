"""`python -m trainer adverbs` as a user runs it (a subprocess, real spaCy): one line out per line in, under faults."""
from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("spacy")
from trainer.captions.adverbs import SpacyModelMissing, load_spacy_model  # noqa: E402

try:
    load_spacy_model()
except SpacyModelMissing as e:  # pragma: no cover - environment
    pytest.skip(f"no spaCy English model: {e}", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
CMD = [sys.executable, "-m", "trainer", "adverbs", "--no-cache", "--workers", "1"]


def _run(args, data: bytes, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(CMD + args, input=data, capture_output=True, cwd=ROOT, timeout=300, **kw)


def _read_lines(stream, n: int, timeout: float = 60) -> list[bytes]:
    """`n` output lines, or an assertion error when they do not come (the command waits for the end of its input)."""
    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    data = b""
    while data.count(b"\n") < n:
        assert sel.select(timeout), f"no output line within {timeout} s while the input stays open (got {data!r})"
        chunk = os.read(stream.fileno(), 1 << 16)
        assert chunk, f"output ended early: {data!r}"
        data += chunk
    return data.splitlines(keepends=True)


def _popen() -> subprocess.Popen:
    return subprocess.Popen(CMD, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                            bufsize=0)


def test_lines_end_at_newline_only_and_crlf_stays():
    # Each of these splits a line for str.splitlines; for the command they are part of one caption.
    lines = ["A very big dog.\x0cA really red car.", "Quite\u2028simply a cat.", "A very\x85old house.",
             "A lone\rCR really here.", "Two\x1cvery tall trees.", "", "An extremely fast train."]
    data = ("\n".join(lines[:3]) + "\r\n" + "\n".join(lines[3:]) + "\n").encode()
    res = _run(["--json"], data)
    assert res.returncode == 0, res.stderr.decode()
    out = res.stdout.split(b"\n")
    assert out[-1] == b"" and len(out) - 1 == len(lines)
    assert [json.loads(x)["original"] for x in out[:-1]] == lines
    assert json.loads(out[6])["text"] == "A fast train."
    assert "\u2028" not in res.stdout.decode().replace("\\u2028", "")  # even str.splitlines reads one record a line
    plain = _run([], data)
    assert plain.returncode == 0 and plain.stdout.count(b"\n") == len(lines)
    rows = plain.stdout.split(b"\n")
    assert rows[2].endswith(b"\r") and not rows[1].endswith(b"\r")  # the CRLF line keeps its CR, no other gains one
    assert rows[6] == b"A fast train."


def test_bad_utf8_and_huge_line_are_copied_and_named(tmp_path):
    huge = b"very " * 220_000  # 1.1 MB in one line: over spaCy's max_length, and gigabytes if tagged
    data = b"A very big dog.\nBad \xff byte, very much.\n" + huge + b"\nAn extremely old car.\n"
    src = tmp_path / "caps.txt"
    src.write_bytes(data)
    # Peak memory of the command alone, measured by a parent that starts nothing else.
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True); "
             "sys.stdout.buffer.write(r.stdout); sys.stderr.buffer.write(r.stderr); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)")
    res = subprocess.run([sys.executable, "-c", probe, *CMD, str(src)], capture_output=True, cwd=ROOT, timeout=300)
    err = res.stderr.decode()
    assert res.returncode == 0, err
    assert res.stdout.split(b"\n") == [b"A big dog.", b"Bad \xff byte, very much.", huge.rstrip(b"\n"),
                                       b"An old car.", b""]
    assert "line 2: not valid UTF-8" in err and "line 3: longer than 10,000 bytes" in err
    assert "Traceback" not in err
    peak_kb = int(err.strip().splitlines()[-1])
    assert peak_kb < 1_000_000, f"{peak_kb / 1e6:.2f} GB for one long line"


def test_output_follows_input_and_ctrl_c_keeps_what_was_written():
    p = _popen()
    try:
        p.stdin.write(b"A very big dog.\nAn extremely old car.\n")
        got = _read_lines(p.stdout, 2)
        assert got == [b"A big dog.\n", b"An old car.\n"]
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 130, err.decode()
    assert out == b""
    assert err.decode().strip().splitlines() == ["interrupted: output lines 1-2 are written; the rest was not filtered"]


def test_closed_output_pipe_stops_quietly():
    p = _popen()
    try:
        p.stdin.write(b"A very big dog.\n")
        assert _read_lines(p.stdout, 1) == [b"A big dog.\n"]
        p.stdout.close()  # what `| head -1` does once it has its line
        p.stdin.write(b"An extremely old car.\n" * 50)
        p.stdin.close()
        err = p.stderr.read()
        p.wait(timeout=60)
    finally:
        p.kill()
    assert err == b""
    assert p.returncode == 141  # as a Unix tool killed by SIGPIPE reports under `set -o pipefail`


def test_missing_file_is_one_line():
    res = _run(["/nonexistent/caps.txt"], b"")
    assert res.returncode == 2
    assert res.stderr.decode().strip().splitlines() == ["error: /nonexistent/caps.txt: No such file or directory"]


def test_reader_splits_only_on_newline_and_bounds_long_lines():
    import io

    from trainer.captions.lines import read_lines

    data = b"a\x0cb\r\nc\xe2\x80\xa8d\n" + b"x" * 50 + b"\ntail"
    got = [(ln.number, ln.raw, ln.ending, ln.problem, ln.first, ln.last)
           for ln in read_lines(io.BytesIO(data), max_bytes=20) if ln is not None]
    assert got[0] == (1, b"a\x0cb", b"\r\n", None, True, True)
    assert got[1] == (2, "c\u2028d".encode(), b"\n", None, True, True)
    assert got[2][0] == 3 and got[2][3] == "longer than 20 bytes"
    assert got[-1] == (4, b"tail", b"", None, True, True)
