"""How many processes filter a list of captions, and how the work is shared between them."""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

# A spawned worker pays a few seconds to start Python, import spaCy and load the model (measured
# in bench/adverbs_throughput.py): below this many captions one process finishes first.
AUTO_WORKERS_MIN_CAPTIONS = 20_000
# Captions per unit of work handed to a helper process: a few seconds' work, so a helper that starts
# late or runs on a busy core delays the end by little, while pickling stays negligible.
SHARD_SIZE = 1000

_WORKER = None  # the filter a helper process runs (forked with it, or built by _init_worker)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. under `taskset` or a container)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def run(filt, texts: list[str], workers: int | None, progress: bool) -> list[tuple]:
    """Filter `texts` with the filter `filt` in this process and `workers - 1` helper processes.

    Where the time went (bench/adverbs_throughput.py, 2 processes): a *spawned* helper needs 3-9 s
    to start Python, import spaCy and load the model (as long as 2,000-4,000 captions take), while
    pickling the results costs milliseconds. So: helpers are *forked* from this process, model
    loaded, when that is safe (`_helper_start_method`), and this process works too, taking shards
    from the back of the queue while the helpers take them from the front; shards are small so that
    whoever is slower (a shared core) holds up the end by one shard at most."""
    if workers is None:
        workers = min(available_cores(), 8) if len(texts) >= AUTO_WORKERS_MIN_CAPTIONS else 1
    if workers <= 1:
        return filt._filter_raw(texts)
    from collections import deque
    from concurrent.futures import wait
    import multiprocessing

    global _WORKER
    filt.nlp  # noqa: B018 -- a forked helper inherits the loaded model; a spawned one loads it meanwhile
    shards = deque(enumerate(texts[i:i + SHARD_SIZE] for i in range(0, len(texts), SHARD_SIZE)))
    done: dict[int, list[tuple]] = {}
    bar = None
    method = _helper_start_method()
    if method == "fork":
        _WORKER, init, initargs = filt, None, ()
    else:
        init, initargs = _init_worker, (type(filt), filt.settings)
    ctx = multiprocessing.get_context(method)
    with ProcessPoolExecutor(workers - 1, mp_context=ctx, initializer=init, initargs=initargs) as pool:
        running: dict = {}

        def collect(futures) -> None:
            for fut in futures:
                k = running.pop(fut)
                done[k] = fut.result()
                if bar is not None:
                    bar.update(len(done[k]))

        def top_up() -> None:  # two shards queued per helper keeps it busy between results
            while shards and len(running) < 2 * (workers - 1):
                k, shard = shards.popleft()
                running[pool.submit(_work, shard)] = k

        top_up()  # forks the helpers now, before the progress bar starts its thread
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(texts), desc="adverbs", unit="caption")
        while shards:
            k, shard = shards.pop()
            done[k] = filt._filter_raw(shard)
            if bar is not None:
                bar.update(len(shard))
            collect([f for f in running if f.done()])
            top_up()
        wait(list(running))
        collect(list(running))
    if bar is not None:
        bar.close()
    if method == "fork":
        _WORKER = None
    return [r for k in sorted(done) for r in done[k]]


def _helper_start_method() -> str:
    """"fork" where it is safe, else "spawn". A forked helper starts in milliseconds with the model
    already loaded (a spawned one needs seconds to import spaCy and load it). Fork is safe on Linux in a
    process with one thread (no lock held elsewhere is copied) and no CUDA context (the helpers run only
    spaCy on the CPU; thinc imports torch, so "torch imported" alone says nothing). spaCy's own
    `nlp.pipe(n_process=...)` forks too."""
    import sys
    import threading

    if not sys.platform.startswith("linux") or threading.active_count() != 1:
        return "spawn"
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if cuda is not None and getattr(cuda, "is_initialized", lambda: True)():
        return "spawn"
    return "fork"


def _init_worker(filter_class, settings: dict) -> None:
    """Build the helper's filter from the parent's settings (the class is passed in: this module does not
    import filter.py, which imports it)."""
    global _WORKER
    _WORKER = filter_class(settings["mode"], settings["keep"], settings["remove"], model=settings["model"],
                           remove_categories=settings["remove_categories"], keep_categories=settings["keep_categories"])
    _WORKER.nlp  # load now, not inside the first shard


def _work(texts: list[str]) -> list[tuple]:
    return _WORKER._filter_raw(texts)
