"""Ray Data's scheduling loop turns at most once per `data.loop_period_ms` (sslsep.data.pacing)."""

import time

import pytest

from sslsep.config import load_config
from sslsep.data.pacing import LoopPace
from sslsep.data.sources import clip_dataset


def test_each_turn_of_the_loop_lasts_at_least_the_period():
    loop = LoopPace(0.01)
    t0 = time.perf_counter()
    for _ in range(6):  # turns that took no time: each one after the first sleeps out the period
        loop.on_execution_step(None)
    assert loop.pauses == 5 and time.perf_counter() - t0 >= 0.05
    loop = LoopPace(0.01)
    for _ in range(3):
        loop.on_execution_step(None)
        time.sleep(0.015)  # a turn that waited longer than the period on its own
    assert loop.pauses == 0
    off = LoopPace(0.0)
    for _ in range(5):
        off.on_execution_step(None)
    assert off.pauses == 0


@pytest.mark.ray
@pytest.mark.parametrize("period_ms", [20.0, 0.0])
def test_a_stream_read_slowly_is_paced_and_loses_nothing(ray_session, period_ms):
    # a driver-side stream (its executor runs in this process) read slower than it is made
    cfg = load_config(None, ["audio.clip_seconds=1.0", "data.synth.num_clips=24", f"data.loop_period_ms={period_ms}",
                             "data.stream_memory_mb=1", "pretrain.batch_clips=4"])
    ds = clip_dataset(cfg.data, cfg.audio)
    assert LoopPace in ds.context.custom_execution_callback_classes
    before, rows = LoopPace.total_pauses, 0
    for batch in ds.iter_batches(batch_size=4):
        rows += len(batch["clip_id"])
        time.sleep(0.2)
    assert rows == 24  # pausing loses nothing
    paused = LoopPace.total_pauses - before
    assert (paused > 0) if period_ms else (paused == 0)
