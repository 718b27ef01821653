"""Progress on stderr for work that can take long: a counting bar (steps, cases, volumes) or a bar over named stages
whose elapsed time keeps ticking while a stage runs. A bar shows only once its work has lasted
:data:`PROGRESS_DELAY_S`, so quick runs print nothing; ``quiet`` turns it off. tqdm is imported on first use, so
``diffux2ct --help`` stays light."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence

PROGRESS_DELAY_S = 2.0
"""Seconds of work before a bar appears: a command answered faster shows none."""
TICK_S = 1.0
"""How often a stage bar redraws its elapsed time."""


@contextlib.contextmanager
def show_progress_after(seconds: float) -> Iterator[None]:
    """Let bars made meanwhile appear after ``seconds`` instead of :data:`PROGRESS_DELAY_S` (tests use 0)."""
    global PROGRESS_DELAY_S
    previous, PROGRESS_DELAY_S = PROGRESS_DELAY_S, seconds
    try:
        yield
    finally:
        PROGRESS_DELAY_S = previous


def progress_bar(total: int | None, desc: str, unit: str = "it", quiet: bool = False, **options):
    """A tqdm bar on stderr over ``total`` units (None: unknown), shown once :data:`PROGRESS_DELAY_S` have passed
    at an update; disabled when ``quiet``. Use it as a context manager or close it."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=quiet, delay=PROGRESS_DELAY_S, **options)


class StageBar:
    """A bar over named stages (:meth:`advance` moves to the next one) for work that reports nothing while a stage
    runs: a thread draws it once :data:`PROGRESS_DELAY_S` have passed and redraws it every :data:`TICK_S`, so its
    elapsed time moves during a long stage. A quiet one does nothing."""

    def __init__(self, desc: str, stages: Sequence[str], quiet: bool = False) -> None:
        self._desc, self._stages, self._done = desc, list(stages), 0
        self._started = time.monotonic()
        self._bar = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        if not quiet:
            self._thread = threading.Thread(target=self._draw, args=(PROGRESS_DELAY_S,), daemon=True)
            self._thread.start()

    def _label(self) -> str:
        """The bar's text: what runs and its current stage."""
        return f"{self._desc}: {self._stages[self._done] if self._done < len(self._stages) else 'finishing'}"

    def _draw(self, delay: float) -> None:
        if self._stop.wait(delay):
            return
        from tqdm import tqdm

        with self._lock:
            if self._stop.is_set():
                return
            self._bar = tqdm(
                total=len(self._stages), initial=self._done, desc=self._label(), bar_format=_STAGE_FORMAT, leave=False
            )
            self._bar.start_t -= time.monotonic() - self._started  # elapsed since the work began, not the bar
            self._bar.refresh()
        while not self._stop.wait(TICK_S):
            with self._lock:
                self._bar.refresh()

    def advance(self) -> None:
        """The current stage is done; the next listed one begins."""
        with self._lock:
            self._done += 1
            if self._bar is not None:
                self._bar.set_description_str(self._label(), refresh=False)
                self._bar.update(1)

    def close(self) -> None:
        """Stop the redrawing and remove the bar."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> StageBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_STAGE_FORMAT = "{desc} [{n_fmt}/{total_fmt} stages done, {elapsed}]"
