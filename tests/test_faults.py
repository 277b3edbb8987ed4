"""Retries for faults, not for bugs (sslsep.training.faults): pure decisions on real exceptions."""

import ray.exceptions as rx
from ray.train import WorkerGroupError
from ray.train.v2._internal.exceptions import WorkerHealthCheckFailedError

from sslsep.training.faults import classify, decide, original_error, repeats, stamp_step


def failed(**by_rank):
    """A worker group failure as Ray Train raises it: the exception of each failed rank."""
    return WorkerGroupError("workers failed", {int(r[1:]): e for r, e in by_rank.items()})


def bug(step, since, message="encoders is not a directory", kind=NotADirectoryError):
    e = kind(message)
    stamp_step(e, step, since)
    return e


def test_a_dead_worker_is_a_fault_and_its_peers_errors_are_collateral():
    f = classify(failed(r0=rx.ActorDiedError(), r1=bug(7, 3, "Connection closed by peer", RuntimeError)))
    assert f.fault and [e[1] for e in f.errors] == ["RuntimeError"]
    assert decide([f, f, f], max_failures=3) == "retry"  # faults never count as repeats
    assert decide([f, f, f, f], max_failures=3) == "exhausted"
    # how Ray Train reports a worker killed by a signal
    assert classify(failed(r0=WorkerHealthCheckFailedError("A worker health check failed.", rx.ActorDiedError()))).fault


def test_the_same_error_at_the_same_step_after_a_restart_is_a_bug():
    first, second = classify(failed(r0=bug(3, 3))), classify(failed(r0=bug(3, 1)))
    assert not first.fault and first.errors == ((0, "NotADirectoryError", "encoders is not a directory", 3, 3),)
    assert decide([first], 3) == "retry"  # once may be chance (a flaky read)
    assert repeats(first, second) and decide([first, second], 3) == "repeated"
    assert "NotADirectoryError: encoders is not a directory at step 3" in second.describe()


def test_the_same_error_the_same_steps_after_each_restore_is_a_bug_too():
    """The crawl: with a checkpoint every step, a bug that fires one step after the restore
    moves forward one step per restart; it is still the same bug."""
    a, b = classify(failed(r1=bug(5, 1, "reduction not finished", RuntimeError))), \
        classify(failed(r1=bug(6, 1, "reduction not finished", RuntimeError)))
    assert repeats(a, b) and decide([a, b], 3) == "repeated"


def test_different_errors_or_steps_are_retried():
    a = classify(failed(r0=bug(3, 3)))
    assert not repeats(a, classify(failed(r0=bug(9, 6))))                         # another step
    assert not repeats(a, classify(failed(r0=bug(3, 3, "disk full", OSError))))   # another error
    assert not repeats(a, classify(failed(r0=rx.NodeDiedError("n1"))))            # a fault
    before_first = classify(failed(r0=ValueError("no training batch")))           # raised in setup
    assert before_first.errors[0][3] is None and repeats(before_first, before_first)


def test_the_original_error_is_what_the_user_sees():
    e = bug(3, 3)
    assert original_error(failed(r0=rx.ActorDiedError(), r1=e)) is e
    other = RuntimeError("controller")
    assert original_error(other) is other and classify(other).fault


def test_sigterm_after_the_loop_finished_is_a_shutdown_not_a_preemption(capsys):
    import os
    import signal

    import pytest

    from sslsep.training import preempt

    seen = []
    before = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))  # the process's own handler
    try:
        with preempt.installed():
            os.kill(os.getpid(), signal.SIGTERM)  # mid-run: a preemption notice, the process goes on
            assert preempt.requested() and seen == []
            assert "saving a checkpoint" in capsys.readouterr().out
        with preempt.installed():
            preempt.finish()  # the loop is done: SIGTERM is Ray stopping its worker
            with pytest.raises(SystemExit):
                os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next line
            assert seen == [signal.SIGTERM] and not preempt.requested()
            assert "saving a checkpoint" not in capsys.readouterr().out
    finally:
        signal.signal(signal.SIGTERM, before)
