"""View builders: pure functions from one clip's separated channels to its views.

A clip's views are "semantically linked": the mixture itself, single separated channels,
and sums of channel subsets, from one separator or from several (Fonseca et al. 2021).
Planning (which view, from which separator and channels, where to crop) is separate from
rendering (cutting the samples) so that plans are cheap to test and to log.

Planning runs in two steps around separation: `draw_views` picks each view's crop, separator
and kind before any separator runs (so only the drawn separators run, on the drawn spans),
and `resolve_views` picks channels among the usable ones of each separated crop.
Every random choice comes from the generator passed in; the service seeds it from
(seed, epoch, clip id), so a new epoch gives new views and a retried batch (after an actor
restart) gives the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

KINDS = ("mixture", "channel", "sum")


@dataclass(frozen=True)
class ViewSpec:
    kind: str                    # "mixture" | "channel" | "sum"
    separator: str               # registry name; "" for the mixture
    channels: tuple[int, ...]    # separated channels summed; () for the mixture
    offset: int                  # first sample of the crop

    @property
    def channels_text(self) -> str:
        return "+".join(map(str, self.channels))


def energy_db(x: np.ndarray) -> np.ndarray:
    """Mean power in dB over the last axis: (..., T) -> (...)."""
    return 10.0 * np.log10(np.mean(np.square(x, dtype=np.float64), axis=-1) + 1e-12)


def active_channels(sources: np.ndarray, mixture: np.ndarray, min_db: float) -> np.ndarray:
    """sources (M, T), mixture (T,) -> (M,) bool: channels within `min_db` of the mixture's
    power. Near-silent channels are what a separator emits for outputs it does not use."""
    return energy_db(sources) - energy_db(mixture) >= min_db


def _crop_offsets(rng: np.random.Generator, n: int, clip_len: int, crop_len: int, same: bool) -> list[int]:
    spare = clip_len - crop_len
    if spare < 0:
        raise ValueError(f"crop of {crop_len} samples exceeds the clip ({clip_len})")
    if same:
        return [int(rng.integers(0, spare + 1))] * n
    return [int(x) for x in rng.integers(0, spare + 1, size=n)]


def _subsets(active: np.ndarray) -> list[tuple[int, ...]]:
    """Channel subsets worth summing: 2+ active channels, never every output (that sum is
    the mixture itself, under mixture consistency)."""
    idx = np.flatnonzero(active)
    m = active.shape[0]
    return [c for k in range(2, len(idx) + 1) for c in combinations(idx.tolist(), k) if k < m]


@dataclass(frozen=True)
class ViewDraw:
    """A view as chosen before any separator runs: its crop, the separator it draws on ('' =
    the mixture: nothing to separate) and the kind drawn for it, which `resolve_views` keeps
    when the separated crop can supply it."""
    kind: str
    separator: str
    offset: int


def draw_views(rng: np.random.Generator, num_views: int, kinds: list[str], separators: list[str],
               clip_len: int, crop_len: int, same_crop: bool = False, across_separators: bool = True,
               anchor_mixture: bool = False) -> list[ViewDraw]:
    """Step 1 of planning, before separation: per view a crop, a separator and a kind, each
    uniform (a separator per clip with `across_separators=False`). Mixture draws need no
    separator; a second mixture view of a clip is redrawn, as `plan_views` always did.
    `anchor_mixture` makes the first view the mixture (the mixture <-> channel comparison)."""
    names = sorted(separators)
    offsets = _crop_offsets(rng, num_views, clip_len, crop_len, same_crop)
    fixed = names[int(rng.integers(len(names)))] if names and not across_separators else None
    draws: list[ViewDraw] = []
    for n, offset in enumerate(offsets):
        if anchor_mixture and n == 0:
            draws.append(ViewDraw("mixture", "", offset))
            continue
        for _ in range(8):  # a few draws to avoid a second mixture view of this clip
            sep = fixed or (names[int(rng.integers(len(names)))] if names else "")
            kind = kinds[int(rng.integers(len(kinds)))] if sep else "mixture"
            if kind != "mixture" or all(d.kind != "mixture" for d in draws):
                break
        draws.append(ViewDraw(kind, sep if kind != "mixture" else "", offset))
    return draws


def _options(kinds: list[str], active: np.ndarray | None) -> dict[str, list[tuple[int, ...]]]:
    """What a separated crop with usable channels `active` (None: no separated crop) offers."""
    return {"mixture": [()] if "mixture" in kinds else [],
            "channel": [(int(c),) for c in np.flatnonzero(active)] if active is not None and "channel" in kinds
            else [],
            "sum": _subsets(active) if active is not None and "sum" in kinds else []}


def resolve_views(rng: np.random.Generator, draws: list[ViewDraw], kinds: list[str],
                  active: list[np.ndarray | None]) -> list[ViewSpec]:
    """Step 2, after separation: channels for each view among the usable ones of its own
    separated crop. active[v]: (M,) bool for view v's crop (None for mixture draws and
    for a crop whose separator failed). A drawn kind the crop cannot supply (no usable
    channel; fewer than two for a sum) is redrawn among the kinds it can, so each kind is
    uniform over the feasible ones, as in `plan_views`; with none the view is the mixture.
    Views of one clip are distinct where the clip allows it."""
    specs: list[ViewSpec] = []
    used: set[tuple] = set()
    for d, act in zip(draws, active):
        if d.kind == "mixture" or act is None:
            spec = ViewSpec("mixture", "", (), d.offset)
        else:
            options = _options(kinds, act)
            feasible = [k for k in kinds if options[k]]
            kind = d.kind
            for attempt in range(8):  # a few draws to avoid repeating a view of this clip
                if not feasible:
                    spec = ViewSpec("mixture", "", (), d.offset)
                    break
                if attempt or not options[kind]:
                    kind = feasible[int(rng.integers(len(feasible)))]
                chans = options[kind][int(rng.integers(len(options[kind])))]
                spec = ViewSpec(kind, d.separator if kind != "mixture" else "", chans, d.offset)
                if (spec.kind, spec.separator, spec.channels) not in used:
                    break
        used.add((spec.kind, spec.separator, spec.channels))
        specs.append(spec)
    return specs


def plan_views(rng: np.random.Generator, num_views: int, kinds: list[str],
               active: dict[str, np.ndarray], clip_len: int, crop_len: int,
               same_crop: bool = False, across_separators: bool = True,
               anchor_mixture: bool = False) -> list[ViewSpec]:
    """Both steps for one clip whose separators' usable channels are known up front
    (active: separator name -> (M,) bool): the views' distribution, in one call, for tests
    and logs. The service runs the steps apart, separating in between only what was drawn."""
    draws = draw_views(rng, num_views, kinds, list(active), clip_len, crop_len, same_crop,
                       across_separators, anchor_mixture)
    return resolve_views(rng, draws, kinds, [active[d.separator] if d.separator else None for d in draws])


def span_start(offset: int, crop_len: int, clip_len: int, margin: int) -> int:
    """First sample of the span a view's separator runs on: the crop with `margin` samples of
    context each side, shifted inside the clip at its edges so that every span of a config
    has the same length, min(clip, crop + 2 * margin) (spans of one separator batch together)."""
    length = min(clip_len, crop_len + 2 * margin)
    return int(min(max(offset - margin, 0), clip_len - length))


def bad_output(channels: np.ndarray, mixture: np.ndarray, max_db: float) -> bool:
    """channels (M, T) of one separated crop, mixture (T,): non-finite, or a channel louder than
    the mixture by more than `max_db` (a diverged checkpoint; mixture consistency makes a sane
    separator's channels sum to the mixture)."""
    if not np.isfinite(channels).all():
        return True
    return bool((energy_db(channels) - energy_db(mixture) > max_db).any())


def render_views(mixture: np.ndarray, specs: list[ViewSpec], crop_len: int,
                 separated: list[np.ndarray | None]) -> np.ndarray:
    """mixture (T,), separated[v] = view v's separated channels on its own crop (M, crop_len)
    or None -> views (V, crop_len) float32."""
    out = np.empty((len(specs), crop_len), np.float32)  # (V, crop)
    for v, s in enumerate(specs):
        if s.kind == "mixture":
            out[v] = mixture[s.offset:s.offset + crop_len]
        else:
            out[v] = separated[v][list(s.channels)].sum(axis=0)
    return out


def augment_views(rng: np.random.Generator, views: np.ndarray, others: np.ndarray | None,
                  gain_db: tuple[float, float] = (0.0, 0.0), mix_prob: float = 0.0,
                  mix_db: tuple[float, float] = (-20.0, -10.0)) -> np.ndarray:
    """Cheap waveform augmentations of one clip's rendered views, after separation (the
    lineage of the method: COLA, Fonseca et al.'s mix-back): views (V, crop), others (V, crop)
    = for each view a crop of another clip of the batch (None: no other clip) -> (V, crop).

    Mix-back first: with probability `mix_prob` a view gets its other crop added at a level
    drawn from `mix_db` (dB relative to the view's own power), so views of one clip share
    their sound but not their background. Then each view's level changes by a gain drawn from
    `gain_db`, so level alone never tells two clips apart. Every draw is made whatever the
    settings (a fixed number per view), so turning one augmentation off does not change the
    other's draws."""
    V = views.shape[0]
    mixed = rng.random(V) < mix_prob  # (V,)
    mix_level = rng.uniform(mix_db[0], mix_db[1], size=V)  # (V,) dB
    gain = rng.uniform(gain_db[0], gain_db[1], size=V)  # (V,) dB
    out = views.astype(np.float32, copy=True)  # (V, crop)
    if others is not None and mixed.any():
        p_view = np.mean(np.square(out, dtype=np.float64), axis=-1)  # (V,)
        p_other = np.mean(np.square(others, dtype=np.float64), axis=-1)  # (V,)
        scale = np.sqrt(p_view * 10.0 ** (mix_level / 10.0) / np.maximum(p_other, 1e-12))  # (V,)
        scale = np.where(mixed & (p_other > 1e-12), scale, 0.0)
        out += (scale[:, None] * others).astype(np.float32)
    out *= (10.0 ** (gain / 20.0)).astype(np.float32)[:, None]
    return out
