"""View builders (pure functions)."""

import numpy as np
import pytest

from sslsep.views.builders import _subsets, active_channels, energy_db, plan_views, render_views


def rng(seed=0):
    return np.random.default_rng(seed)


def test_energy_db_and_active_channels():
    assert energy_db(np.ones(100)) == pytest.approx(0.0, abs=1e-6)
    assert energy_db(np.full(100, 0.1)) == pytest.approx(-20.0, abs=1e-6)
    mix = np.ones(100)
    sources = np.stack([np.full(100, 0.5), np.full(100, 0.01), np.full(100, 0.2)])  # -6, -40, -14 dB
    assert active_channels(sources, mix, -30.0).tolist() == [True, False, True]
    assert active_channels(sources, mix, -10.0).tolist() == [True, False, False]


def test_subsets_never_sum_every_output():
    assert _subsets(np.array([True, True, True])) == [(0, 1), (0, 2), (1, 2)]
    assert _subsets(np.array([True, False, True, True])) == [(0, 2), (0, 3), (2, 3), (0, 2, 3)]
    assert _subsets(np.array([True, False])) == []


def test_plan_respects_kinds_active_channels_and_is_seeded():
    active = {"a": np.array([True, False, True, True]), "b": np.array([False, True, False, False])}
    plans = [plan_views(rng(s), 4, ["channel", "sum"], active, 16000, 8000) for s in range(30)]
    for specs in plans:
        assert len(specs) == 4
        for s in specs:
            assert s.kind in ("channel", "sum") and s.separator in active
            assert all(active[s.separator][c] for c in s.channels)
            assert 0 <= s.offset <= 8000
            if s.kind == "sum":
                assert s.separator == "a" and len(s.channels) >= 2
    assert plan_views(rng(3), 4, ["channel", "sum"], active, 16000, 8000) == plans[3]
    drawn = {(s.kind, s.separator) for p in plans for s in p}
    assert drawn == {("channel", "a"), ("channel", "b"), ("sum", "a")}  # across separators


def test_plan_distinct_views_and_crops():
    active = {"a": np.array([True, True, True, True])}
    specs = plan_views(rng(1), 3, ["mixture", "channel", "sum"], active, 16000, 4000, same_crop=True)
    assert len({(s.kind, s.separator, s.channels) for s in specs}) == 3
    assert len({s.offset for s in specs}) == 1
    one = plan_views(rng(2), 6, ["channel"], {"a": active["a"], "b": active["a"]}, 16000, 4000,
                     across_separators=False)
    assert len({s.separator for s in one}) == 1


def test_plan_falls_back_to_the_mixture_when_nothing_separated_is_usable():
    active = {"a": np.array([False, False, False])}
    specs = plan_views(rng(0), 2, ["channel", "sum"], active, 100, 100)
    assert [(s.kind, s.separator, s.channels, s.offset) for s in specs] == [("mixture", "", (), 0)] * 2
    with pytest.raises(ValueError, match="exceeds the clip"):
        plan_views(rng(0), 2, ["mixture"], active, 100, 200)


def test_render_cuts_and_sums():
    mix = np.arange(10, dtype=np.float32)
    src = {"a": np.stack([np.arange(10), 10 * np.arange(10), 100 * np.arange(10)]).astype(np.float32)}
    from sslsep.views.builders import ViewSpec

    specs = [ViewSpec("mixture", "", (), 2), ViewSpec("channel", "a", (1,), 0), ViewSpec("sum", "a", (0, 2), 6)]
    out = render_views(mix, src, specs, 4)  # (V, crop)
    assert out.shape == (3, 4) and out.dtype == np.float32
    assert out[0].tolist() == [2, 3, 4, 5]
    assert out[1].tolist() == [0, 10, 20, 30]
    assert out[2].tolist() == [606, 707, 808, 909]


def test_anchor_mixture_and_mixture_only():
    active = {"a": np.array([True, True, False])}
    specs = plan_views(rng(4), 3, ["channel"], active, 16000, 8000, anchor_mixture=True)
    assert specs[0].kind == "mixture" and [s.kind for s in specs[1:]] == ["channel", "channel"]
    mix_only = plan_views(rng(5), 2, ["mixture"], {}, 16000, 8000)
    assert [s.kind for s in mix_only] == ["mixture", "mixture"] and mix_only[0].offset != mix_only[1].offset
