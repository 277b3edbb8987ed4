"""A preemption notice (SIGTERM: what a spot instance's reclaim notice, a Kubernetes pod
eviction or `ray stop` end up sending to the worker processes) becomes a checkpoint at the next
step boundary, then a `Preempted` fault: the launcher restarts from that checkpoint, losing at
most the step that was running.

The handler only sets a flag (the step loop reads it, and every rank stops at the same step:
`any_ranks`); a second SIGTERM runs the handler that was there before (Ray's: the process
exits). Signal handlers can only be set from a process's main thread: in a Ray Train worker
that is the actor's, where `PreemptionCallback.after_init_train_context` runs (the training
function runs in another thread); in process, `installed()` around the loop.
"""

from __future__ import annotations

import contextlib
import signal
import threading

_requested = threading.Event()
_finished = threading.Event()  # the loop is over: a SIGTERM now is the worker's shutdown


class Preempted(RuntimeError):
    """The run was told to stop (SIGTERM) and saved a checkpoint at the step it had reached: a
    fault to restart from (sslsep.training.faults), not a bug."""


def requested() -> bool:
    return _requested.is_set()


def finish() -> None:
    """The loop ended: a SIGTERM from now on (Ray Train stopping its workers after `fit`) is no
    preemption, and is handled as it would have been without us, with nothing printed."""
    _finished.set()


def _handler(previous):
    def on_sigterm(signum, frame):
        if _requested.is_set() or _finished.is_set():  # told twice, or done: stop as without us
            if callable(previous):
                previous(signum, frame)
            raise SystemExit(128 + signum)
        _requested.set()
        print("SIGTERM: saving a checkpoint at the next step boundary, then stopping", flush=True)
    return on_sigterm


def install() -> object:
    """Set the SIGTERM handler (main thread only); returns the one it replaced."""
    _requested.clear()
    _finished.clear()
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _handler(previous))
    return previous


@contextlib.contextmanager
def installed():
    """The handler for a loop that runs in this process's main thread (else nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = install()
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _requested.clear()
        _finished.clear()


def callback():
    """A Ray Train worker callback that installs the handler in each worker's main thread.
    Built on Ray Train V2's WorkerCallback (an internal interface that RunConfig.callbacks
    passes to the workers as it is)."""
    from ray.train.v2._internal.execution.callback import WorkerCallback

    class PreemptionCallback(WorkerCallback):
        def after_init_train_context(self):
            if threading.current_thread() is threading.main_thread():
                install()
            else:
                print("preemption: the worker's hooks do not run in its main thread; SIGTERM is not "
                      "turned into a checkpoint", flush=True)

    return PreemptionCallback()
