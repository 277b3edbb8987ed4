"""A pace for Ray Data's scheduling loop.

Ray Data's streaming executor (Ray 2.60) runs a loop that waits on its running tasks
(`ray.wait`, up to 0.1 s) and then updates budgets, metrics and autoscaling requests, several
ms of Python per turn. When its consumer (a trainer) is slower than its producers, the read
tasks' streaming generators hold outputs that backpressure forbids reading: `ray.wait` finds
them ready at once, and the loop turns about 65 times a second doing nothing: 40 % of a core
in a toy pipeline. In the quick job, with Ray's idle workers kept, the unpaced loop of the
stream's `SplitCoordinator` actor takes about a tenth of a core, and the pace cuts its CPU
beside the separator from 18.7 to 7.7 s per 80 steps (docs/benchmarks.md, "The quick job
on a CPU without native bf16"). On a 2-core laptop that is CPU the trainer needs. `LoopPace`,
registered on the DataContext that every stream's Dataset copies (`register`), makes each
turn last at least `data.loop_period_ms`: a block the consumer frees is refilled within one
period.
"""

from __future__ import annotations

import time

from ray.data._internal.execution.execution_callback import ExecutionCallback

KEY = "sslsep.loop_period_s"  # the DataContext's key-value config, read when a stream starts


class LoopPace(ExecutionCallback):
    """Sleep out the rest of `period_s` after each turn of the loop (0: never). `pauses`
    counts this loop's sleeps, `total_pauses` every loop's in this process."""

    total_pauses = 0

    def __init__(self, period_s: float = 0.02):
        self.period_s = period_s
        self.pauses = 0
        self._last: float | None = None

    def before_execution_starts(self, executor) -> None:
        context = getattr(executor, "_data_context", None)  # Ray makes callbacks with no arguments
        if context is not None:
            self.period_s = float(context.get_config(KEY, self.period_s))

    def on_execution_step(self, executor) -> None:
        if self._last is not None and self.period_s > 0:
            rest = self.period_s - (time.perf_counter() - self._last)
            if rest > 0:
                time.sleep(rest)
                self.pauses += 1
                LoopPace.total_pauses += 1
        self._last = time.perf_counter()


def register(context, period_s: float) -> None:
    """Pace the scheduling loops of Datasets made from `context` from now on (they copy it, and
    so does the SplitCoordinator that runs Ray Train's ingest)."""
    context.set_config(KEY, period_s)
    if LoopPace not in context.custom_execution_callback_classes:
        context.custom_execution_callback_classes.append(LoopPace)
