"""The delivery ledger (sslsep.data.delivery): key ranges, per-pass accounting, and what a
restored stream reads again. Pure numpy."""

import numpy as np
import pytest

from sslsep.data.delivery import ROW_SPAN, Ledger, Ranges, clip_keys, remaining_items, report


def test_ranges_hold_exactly_the_keys_given():
    rng = np.random.default_rng(0)
    keys = rng.choice(5000, size=1500, replace=False)
    r = Ranges.of(keys)
    assert len(r) == 1500
    probe = np.arange(-3, 5003)
    np.testing.assert_array_equal(r.contains(probe), np.isin(probe, keys))
    more = rng.choice(5000, size=900, replace=False)
    u = r.union(Ranges.of(more))
    np.testing.assert_array_equal(u.contains(probe), np.isin(probe, keys) | np.isin(probe, more))
    assert len(u) == len(np.union1d(keys, more))
    assert np.all(u.starts[1:] > u.ends[:-1])  # disjoint and not touching: as compact as it gets
    assert Ranges.from_list(u.to_list()).to_list() == u.to_list()
    assert u.count(100, 200) == int(np.isin(np.arange(100, 200), np.union1d(keys, more)).sum())


def test_a_pass_delivered_in_order_is_one_range():
    r = Ranges.of(clip_keys(np.arange(10_000), np.zeros(10_000)))
    assert len(r.starts) == 10_000  # one row per item: keys ROW_SPAN apart
    r = Ranges.of(clip_keys(np.repeat(np.arange(3), 1000), np.tile(np.arange(1000), 3)))
    assert r.to_list() == [[i * ROW_SPAN, i * ROW_SPAN + 1000] for i in range(3)]


def test_ledger_counts_per_pass_repeats_and_undelivered_items():
    ledger = Ledger([0, 4, 8, 12])  # three passes of four one-clip items
    assert ledger.add(clip_keys([0, 1, 2, 3, 4], 0), step=1) == 0
    assert ledger.add(clip_keys([5, 6, 5], 0), step=2) == 1  # twice in one batch
    assert ledger.add(clip_keys([2], 0), step=3) == 1         # held already
    passes = {p["pass"]: p for p in ledger.passes()}
    assert passes[0] == {"pass": 0, "items": 4, "delivered": 4, "repeats": 1, "undelivered_items": 0,
                         "began_at_step": 1, "state": "complete"}
    assert passes[1]["delivered"] == 3 and passes[1]["repeats"] == 1 and passes[1]["state"] == "partial"
    assert passes[1]["undelivered_items"] == 1 and passes[1]["began_at_step"] == 1
    assert passes[2]["state"] == "not started" and passes[2]["began_at_step"] is None
    ledger.restored(3, last_logged_step=5)
    again = Ledger.from_state(ledger.state())
    assert again.passes() == ledger.passes()
    assert again.restarts == [{"step": 3, "delivered": 7, "last_logged_step": 5, "steps_redone_at_least": 2}]
    again.restored(4, 4, earlier=[{"step": 1, "steps_redone_at_least": 3}, *again.restarts])
    assert [r["step"] for r in again.restarts] == [1, 3, 4]
    assert report(again)["repeats"] == 2 and report(again)["steps_redone_at_least"] == 5


def test_a_restored_stream_reads_what_was_not_delivered():
    # items 0-3 are files (one row each), items 4-5 shards of 3 rows, item 6 of unknown size
    rows = [1, 1, 1, 1, 3, 3, None]
    delivered = Ranges.of(np.r_[clip_keys([0, 2], 0), clip_keys([4, 4, 4], [0, 1, 2]), clip_keys([5], [1]),
                                clip_keys([6], [0])])
    keep, skip = remaining_items(len(rows), delivered, lambda seq: rows[seq])
    assert keep == [1, 3, 5, 6]            # files 0 and 2 and the whole shard 4 are not read again
    assert skip == {5: [[1, 2]], 6: [[0, 1]]}  # read again, their delivered rows left out
    assert remaining_items(3, Ranges(), lambda seq: 1) == ([0, 1, 2], {})


@pytest.mark.parametrize("seed", [0, 1])
def test_interrupted_deliveries_add_up_to_one_pass(seed):
    """Deliveries cut at random points and resumed from the ledger: every clip once."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(1, 5, size=40).tolist()  # 40 items of 1-4 rows
    ledger = Ledger([0, 40])
    held = Ranges()
    for _ in range(4):  # four attempts, each delivering part of what remains, in a shuffled order
        keep, skip = remaining_items(40, held, lambda seq: rows[seq])
        stream = [clip_keys(seq, r) for seq in keep for r in range(rows[seq])
                  if not any(a <= r < b for a, b in skip.get(seq, []))]
        stream = rng.permutation(stream)[: rng.integers(1, len(stream) + 1)]
        assert ledger.add(stream) == 0
        held = ledger.delivered
    keep, skip = remaining_items(40, held, lambda seq: rows[seq])
    rest = [clip_keys(seq, r) for seq in keep for r in range(rows[seq]) if not any(a <= r < b for a, b in skip.get(seq, []))]
    ledger.add(rest)
    assert len(ledger.delivered) == sum(rows) and ledger.repeats.sum() == 0
