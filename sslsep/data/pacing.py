"""A pause for Ray Data's scheduling loop when it has nothing to wait on.

Ray Data's streaming executor (Ray 2.60) runs a loop that waits on its running tasks
(`ray.wait`, up to 0.1 s) and then updates budgets, metrics and autoscaling requests. When a
consumer slower than its producers (a trainer fed by read tasks and an augmenter pool) has
filled the stream up to its memory budget, no task runs, nothing is waited on, and the loop
spins: on a 2-core machine the executor's actor (Ray Train's `SplitCoordinator`) burned 84 %
of a core beside a mixture-only trainer and 20-28 % beside a configured one (docs/benchmarks.md,
"Ray Data's idle scheduling loop"). `IdlePause`, registered on the DataContext that every
stream's Dataset copies (`register`), sleeps `data.idle_pause_ms` after a step that returned
at once: an idle loop turns about a hundred times a second, and a block the consumer frees is
refilled within that pause.
"""

from __future__ import annotations

import time

from ray.data._internal.execution.execution_callback import ExecutionCallback

KEY = "sslsep.idle_pause_s"  # the DataContext's key-value config: the pause, read at the start
FAST_S = 0.002  # a loop step shorter than this waited on nothing


class IdlePause(ExecutionCallback):
    """Sleep `pause_s` after a loop step that took less than `FAST_S` (0: never). `pauses`
    counts this loop's; `total_pauses` every loop's in this process."""

    total_pauses = 0

    def __init__(self, pause_s: float = 0.01):
        self.pause_s = pause_s
        self.pauses = 0
        self._last: float | None = None

    def before_execution_starts(self, executor) -> None:
        context = getattr(executor, "_data_context", None)  # Ray makes callbacks with no arguments
        if context is not None:
            self.pause_s = float(context.get_config(KEY, self.pause_s))

    def on_execution_step(self, executor) -> None:
        now = time.perf_counter()
        if self.pause_s > 0 and self._last is not None and now - self._last < FAST_S:
            time.sleep(self.pause_s)
            self.pauses += 1
            IdlePause.total_pauses += 1
            now = time.perf_counter()
        self._last = now


def register(context, pause_s: float) -> None:
    """Pause idle scheduling loops of Datasets made from `context` from now on (they copy it,
    and so does the SplitCoordinator that runs Ray Train's ingest)."""
    context.set_config(KEY, pause_s)
    if IdlePause not in context.custom_execution_callback_classes:
        context.custom_execution_callback_classes.append(IdlePause)
