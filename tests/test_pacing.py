"""Ray Data's scheduling loop pauses when it has nothing to wait on (sslsep.data.pacing)."""

import time

import pytest

from sslsep.config import load_config
from sslsep.data.pacing import FAST_S, IdlePause
from sslsep.data.sources import clip_dataset


def test_a_loop_that_waited_on_nothing_pauses_and_one_that_waited_does_not():
    loop = IdlePause(0.005)
    for _ in range(5):  # back to back: nothing was waited on
        loop.on_execution_step(None)
    assert loop.pauses == 4  # the first call has nothing to compare with
    t0 = time.perf_counter()
    loop.on_execution_step(None)
    assert time.perf_counter() - t0 >= 0.005
    loop = IdlePause(0.005)
    for _ in range(3):
        loop.on_execution_step(None)
        time.sleep(FAST_S * 3)  # a step that waited on a task
    assert loop.pauses == 0
    off = IdlePause(0.0)
    for _ in range(5):
        off.on_execution_step(None)
    assert off.pauses == 0


@pytest.mark.ray
@pytest.mark.parametrize("pause_ms", [10.0, 0.0])
def test_a_stream_held_back_by_a_slow_consumer_pauses_its_loop(ray_session, pause_ms):
    # a driver-side stream (its executor runs in this process) read slower than it is made
    cfg = load_config(None, ["audio.clip_seconds=1.0", "data.synth.num_clips=24", f"data.idle_pause_ms={pause_ms}",
                             "data.stream_memory_mb=1", "pretrain.batch_clips=4"])
    ds = clip_dataset(cfg.data, cfg.audio)
    assert IdlePause in ds.context.custom_execution_callback_classes
    before, rows = IdlePause.total_pauses, 0
    for batch in ds.iter_batches(batch_size=4):
        rows += len(batch["clip_id"])
        time.sleep(0.2)
    assert rows == 24  # pausing loses nothing
    paused = IdlePause.total_pauses - before
    assert (paused > 0) if pause_ms else (paused == 0)
