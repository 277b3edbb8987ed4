"""The delivery ledger (sslsep.data.delivery): key ranges, per-pass accounting, and what a
restored stream reads again. Pure numpy."""

import time

import numpy as np
import pytest

from sslsep.data.delivery import Ledger, Ranges, remaining_items, report


def test_ranges_hold_exactly_the_keys_given():
    rng = np.random.default_rng(0)
    keys = rng.choice(5000, size=1500, replace=False)
    r = Ranges.of(keys)
    assert len(r) == 1500
    probe = np.arange(-3, 5003)
    np.testing.assert_array_equal(r.contains(probe), np.isin(probe, keys))
    np.testing.assert_array_equal(r.held_below(probe), [int((keys < x).sum()) for x in probe])
    more = rng.choice(5000, size=900, replace=False)
    u = r.union(Ranges.of(more))
    np.testing.assert_array_equal(u.contains(probe), np.isin(probe, keys) | np.isin(probe, more))
    assert len(u) == len(np.union1d(keys, more))
    assert np.all(u.starts[1:] > u.ends[:-1])  # disjoint and not touching: as compact as it gets
    assert Ranges.from_list(u.to_list()).to_list() == u.to_list()
    assert u.count(100, 200) == int(np.isin(np.arange(100, 200), np.union1d(keys, more)).sum())


def test_a_pass_delivered_in_any_order_is_one_range_and_cheap_at_audioset_scale():
    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    held = Ranges()
    for chunk in np.array_split(rng.permutation(2_000_000), 200):  # 200 reports of a shuffled pass
        held = held.union(Ranges.of(chunk))
    assert held.to_list() == [[0, 2_000_000]]
    keep, skip = remaining_items(np.arange(6_000_001), held)  # 3 passes of 2M one-clip files
    assert keep == list(range(2_000_000, 6_000_000)) and skip == {}
    assert time.perf_counter() - t0 < 30  # seconds on 2 cores; a per-item Python loop took minutes


def test_ledger_counts_per_pass_repeats_and_undelivered_clips():
    ledger = Ledger([0, 4, 8, 12])  # three passes of four clips
    assert ledger.add([0, 1, 2, 3, 4], step=1) == 0
    assert ledger.add([5, 6, 5], step=2) == 1  # twice in one batch
    assert ledger.add([2], step=3) == 1         # held already
    passes = {p["pass"]: p for p in ledger.passes()}
    assert passes[0] == {"pass": 0, "clips": 4, "delivered": 4, "repeats": 1, "undelivered": 0,
                         "began_at_step": 1, "state": "complete"}
    assert passes[1]["delivered"] == 3 and passes[1]["repeats"] == 1 and passes[1]["state"] == "partial"
    assert passes[1]["undelivered"] == 1 and passes[1]["began_at_step"] == 1
    assert passes[2]["state"] == "not started" and passes[2]["began_at_step"] is None
    ledger.restored(3, last_logged_step=5)
    again = Ledger.from_state(ledger.state())
    assert again.passes() == ledger.passes()
    assert again.restarts == [{"step": 3, "delivered": 7, "last_logged_step": 5, "steps_redone_at_least": 2}]
    again.restored(4, 4, earlier=[{"step": 1, "steps_redone_at_least": 3}, *again.restarts])
    assert [r["step"] for r in again.restarts] == [1, 3, 4]
    assert report(again)["repeats"] == 2 and report(again)["steps_redone_at_least"] == 5
    assert report(again)["passes_complete"] == 1


def test_a_restored_stream_reads_what_was_not_delivered():
    # items 0-3 are files (one clip each), items 4-5 shards of 3 clips: keys 0-3, 4-6, 7-9
    bases = [0, 1, 2, 3, 4, 7, 10]
    delivered = Ranges.of([0, 2, 4, 5, 6, 8])
    keep, skip = remaining_items(bases, delivered)
    assert keep == [1, 3, 5]      # files 0 and 2 and the whole shard 4 are not read again
    assert skip == {5: [[1, 2]]}  # shard 5 is read again, its delivered row left out
    assert remaining_items([0, 1, 2, 3], Ranges()) == ([0, 1, 2], {})


@pytest.mark.parametrize("seed", [0, 1])
def test_interrupted_deliveries_add_up_to_one_pass(seed):
    """Deliveries cut at random points and resumed from the ledger: every clip once."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(1, 5, size=40)  # 40 items of 1-4 clips
    bases = np.r_[0, np.cumsum(rows)]
    ledger = Ledger([0, int(bases[-1])])

    def stream():
        keep, skip = remaining_items(bases, ledger.delivered)
        return [int(bases[i]) + r for i in keep for r in range(rows[i])
                if not any(a <= r < b for a, b in skip.get(i, []))]

    for _ in range(4):  # four attempts, each delivering part of what remains, in a shuffled order
        part = rng.permutation(stream())
        assert ledger.add(part[: rng.integers(1, len(part) + 1)]) == 0
    ledger.add(stream())
    assert len(ledger.delivered) == rows.sum() and ledger.repeats.sum() == 0
