"""View builders: pure functions from one clip's separated channels to its views.

A clip's views are "semantically linked": the mixture itself, single separated channels,
and sums of channel subsets, from one separator or from several (Fonseca et al. 2021).
Planning (which view, from which separator and channels, where to crop) is separate from
rendering (cutting the samples) so that plans are cheap to test and to log.

Every random choice comes from the generator passed in; the service seeds it from the
clip id, so a retried batch (after an actor restart) gives the same views.
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


def plan_views(rng: np.random.Generator, num_views: int, kinds: list[str],
               active: dict[str, np.ndarray], clip_len: int, crop_len: int,
               same_crop: bool = False, across_separators: bool = True,
               anchor_mixture: bool = False) -> list[ViewSpec]:
    """Choose `num_views` views of one clip.

    active: separator name -> (M,) bool of its usable channels. A kind that a separator
    cannot supply (no active channel; fewer than two for a sum) is not drawn for it; when
    nothing separated is usable the view falls back to the mixture. Views of one clip are
    distinct where the clip allows it. `anchor_mixture` makes the first view the mixture
    (the mixture <-> channel comparison).
    """
    names = sorted(active)
    offsets = _crop_offsets(rng, num_views, clip_len, crop_len, same_crop)
    fixed = names[int(rng.integers(len(names)))] if names and not across_separators else None
    specs: list[ViewSpec] = []
    used: set[tuple] = set()
    for n, offset in enumerate(offsets):
        if anchor_mixture and n == 0:
            specs.append(ViewSpec("mixture", "", (), offset))
            used.add(("mixture", "", ()))
            continue
        spec = None
        for _ in range(8):  # a few draws to avoid repeating a view of this clip
            sep = fixed or (names[int(rng.integers(len(names)))] if names else "")
            options = {"mixture": [()] if "mixture" in kinds else [],
                       "channel": [(int(c),) for c in np.flatnonzero(active[sep])]
                       if sep and "channel" in kinds else [],
                       "sum": _subsets(active[sep]) if sep and "sum" in kinds else []}
            feasible = [k for k in kinds if options[k]]
            if not feasible:
                spec = ViewSpec("mixture", "", (), offset)
                break
            kind = feasible[int(rng.integers(len(feasible)))]
            chans = options[kind][int(rng.integers(len(options[kind])))]
            spec = ViewSpec(kind, sep if kind != "mixture" else "", chans, offset)
            if (spec.kind, spec.separator, spec.channels) not in used:
                break
        used.add((spec.kind, spec.separator, spec.channels))
        specs.append(spec)
    return specs


def render_views(mixture: np.ndarray, sources: dict[str, np.ndarray], specs: list[ViewSpec],
                 crop_len: int) -> np.ndarray:
    """mixture (T,), sources name -> (M, T) -> views (V, crop_len) float32."""
    out = np.empty((len(specs), crop_len), np.float32)  # (V, crop)
    for v, s in enumerate(specs):
        window = slice(s.offset, s.offset + crop_len)
        if s.kind == "mixture":
            out[v] = mixture[window]
        else:
            out[v] = sources[s.separator][list(s.channels), window].sum(axis=0)
    return out
