"""`trainer adverbs`' input and output: caption lines streamed through the filter (trainer.captions.lines)
from FILE or stdin to stdout, with Ctrl-C (exit 130, what was written is kept), a closed pipe (exit 141,
quiet) and a missing file (exit 2) handled as a command-line tool should."""
from __future__ import annotations

import os
import signal
import sys
from concurrent.futures.process import BrokenProcessPool

from ..captions.lines import CHUNK_LINES, LineFilter


def chunk_workers(workers: int | None, n: int) -> int | None:
    """Worker processes for one chunk of `adverbs`' input. The filter starts helpers by itself only for 20,000
    captions in one call, which a chunk of distinct captions just misses: half a chunk or more means a large
    input, so it gets the filter's automatic count (the cores, at most 8) too."""
    if workers is not None or n < CHUNK_LINES // 2:
        return workers
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return min(cores, 8)


def stream_lines(filter_texts, file, json_lines: bool, fatal) -> int:
    """Run `adverbs` over FILE or stdin (trainer.captions.lines), handling Ctrl-C, a closed pipe and
    `fatal` errors; the exit status."""
    try:
        src = _binary(sys.stdin) if file in (None, "-") else open(file, "rb")
    except OSError as e:
        print(f"error: {file}: {e.strerror or e}", file=sys.stderr)
        return 2
    sys.stdout.flush()
    shown = []

    def warn(message: str) -> None:  # the first 20; the summary at the end lists the line numbers
        if len(shown) < 20:
            shown.append(message)
            print(f"warning: {message}", file=sys.stderr, flush=True)

    lf = LineFilter(filter_texts, _binary(sys.stdout), json_lines=json_lines, warn=warn)
    main_pid = os.getpid()

    def on_sigint(signum, frame):
        if os.getpid() != main_pid:  # a forked filter helper: leave quietly, the main process reports
            os._exit(130)
        lf.on_interrupt()

    try:
        previous = signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread: Python's own Ctrl-C handling stays
        previous = None
    try:
        with src:
            lf.run(src)
    except (KeyboardInterrupt, BrokenProcessPool) as e:
        if isinstance(e, BrokenProcessPool) and not lf.interrupted:
            raise
        print(f"interrupted: {_written(lf)}; the rest was not filtered", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `| head` closed the pipe: stop quietly, as `cat` would
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the exit's flush of stdout finds nothing to fail on
        return 141
    except fatal as e:
        print(f"error: {e} ({_written(lf)})", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if lf.unfiltered:
        more = " (warnings for the first 20 above)" if len(lf.unfiltered) > 20 else ""
        print(f"warning: {len(lf.unfiltered)} line(s) copied unchanged, not filtered: line(s) "
              f"{', '.join(map(str, lf.unfiltered[:20]))}{' ...' if len(lf.unfiltered) > 20 else ''}{more}",
              file=sys.stderr)
    return 0


def _written(lf) -> str:
    return f"output lines 1-{lf.written} are written" if lf.written else "no output line was written"


def _binary(stream):
    """The byte stream under a text stream (stdin/stdout), or the stream itself when it has none (tests)."""
    return getattr(stream, "buffer", None) or _TextAsBytes(stream)


class _TextAsBytes:
    """Bytes in and out of a text-only stream (an io.StringIO put in place of stdin/stdout)."""

    def __init__(self, stream):
        self.stream = stream

    def read(self, n: int = -1) -> bytes:
        return self.stream.read(n).encode("utf-8", "surrogateescape")

    def write(self, data: bytes) -> None:
        self.stream.write(data.decode("utf-8", "surrogateescape"))

    def flush(self) -> None:
        self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass
