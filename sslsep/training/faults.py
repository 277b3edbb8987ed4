"""Retries for faults, not for bugs: which failed training attempt is worth another try.

A worker group fails for one of two reasons. A *fault* (a worker or node died, an object was
lost, the raylet went away) says nothing about the next attempt: restart from the latest
checkpoint. A *bug* (an exception raised by the training function) that fires again with the
same type and message at the same step, or the same number of steps after the restore, will
fire on every attempt: stop at once with the original error instead of spending the retries
(and, with frequent checkpoints, crawling forward one step per restart).

The step loop stamps the exception it lets through with the step it was running
(`stamp_step`); the launcher keeps one `Failure` per failed attempt and asks `decide`.
Pure functions of the exceptions; Ray is imported only for its exception classes.
"""

from __future__ import annotations

import dataclasses

STEP_ATTR, SINCE_ATTR = "sslsep_step", "sslsep_steps_since_restore"


def stamp_step(exc: BaseException, step: int, steps_since_restore: int) -> None:
    """Record on `exc` the step that raised it (pickled with the exception: its __dict__)."""
    setattr(exc, STEP_ATTR, step)
    setattr(exc, SINCE_ATTR, steps_since_restore)


def _fault_types() -> tuple[type, ...]:
    import ray.exceptions as rx
    from ray.train.v2._internal import exceptions as tx  # how Train V2 reports a dead worker

    from sslsep.training.preempt import Preempted

    return (Preempted, rx.RayActorError, rx.NodeDiedError, rx.WorkerCrashedError, rx.LocalRayletDiedError,
            rx.ObjectLostError, rx.RaySystemError, rx.RpcError, rx.OutOfMemoryError,
            tx.WorkerHealthCheckFailedError, tx.WorkerHealthCheckTimeoutError, tx.CollectiveTimeoutError)


@dataclasses.dataclass(frozen=True)
class Failure:
    """One failed attempt: `fault` when any worker died of a system cause (the peers' errors
    are then collateral: a collective that lost its partner), else the user errors by rank."""
    fault: bool
    errors: tuple[tuple[int, str, str, int | None, int | None], ...]  # (rank, type, message, step, since)
    preempted: bool = False  # told to stop (SIGTERM) and checkpointed: not counted against MAX_FAILURES

    def describe(self) -> str:
        if not self.errors:
            return "fault" if self.fault else "error"
        rank, typ, msg, step, _ = self.errors[0]
        at = f" at step {step}" if step is not None else " before the first step"
        first = msg.splitlines()[0][:200] if msg else ""
        kind = "preempted" if self.preempted else "fault" if self.fault else "error"
        return f"{kind} on rank {rank}: {typ}: {first}{at}"


def classify(error: BaseException) -> Failure:
    """A Ray Train failure (`WorkerGroupError` with `worker_failures`, or any other error of
    `fit()`) as a `Failure`."""
    workers = getattr(error, "worker_failures", None)
    if workers is None:  # the controller failed, not the training function: a fault
        return Failure(True, ((0, type(error).__name__, str(error), None, None),))
    from sslsep.training.preempt import Preempted

    faults = _fault_types()
    fault = any(isinstance(e, faults) for e in workers.values())
    errors = tuple((rank, type(e).__name__, str(e), getattr(e, STEP_ATTR, None), getattr(e, SINCE_ATTR, None))
                   for rank, e in sorted(workers.items()) if not isinstance(e, faults))
    preempted = [(rank, type(e).__name__, str(e), getattr(e, STEP_ATTR, None), getattr(e, SINCE_ATTR, None))
                 for rank, e in sorted(workers.items()) if isinstance(e, Preempted)]
    return Failure(fault, errors or tuple(preempted[:1]), preempted=bool(preempted))


def repeats(before: Failure, now: Failure) -> bool:
    """`now` is the bug of `before` again: both are errors (no fault), and one error of `now`
    has the type and message of one of `before` at the same step or the same number of steps
    after its restore (both None: before the first step)."""
    if before.fault or now.fault:
        return False
    return any(t1 == t2 and m1 == m2 and (s1 == s2 or (d1 is not None and d1 == d2))
               for _, t1, m1, s1, d1 in before.errors for _, t2, m2, s2, d2 in now.errors)


def decide(history: list[Failure], max_failures: int) -> str:
    """"retry" or why not: "repeated" (the last failure is the one before it again) or
    "exhausted" (more than `max_failures` failures)."""
    if len(history) >= 2 and repeats(history[-2], history[-1]):
        return "repeated"
    if len([f for f in history if not f.preempted]) > max_failures:
        return "exhausted"
    return "retry"


def original_error(error: BaseException) -> BaseException:
    """The first user exception of a worker group failure (what the training function raised),
    or `error` itself."""
    workers = getattr(error, "worker_failures", None) or {}
    faults = _fault_types()
    for _, e in sorted(workers.items()):
        if not isinstance(e, faults):
            return e
    return error
