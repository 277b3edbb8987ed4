"""What the training stream delivered, across restarts: which clips of which pass reached a
training step, which twice, which never.

A clip of the stream is named by its *key*: `seq * ROW_SPAN + row`, where `seq` is its work
item's index in the stream's plan (`sslsep.data.sources.plan_passes`: a file, a scene or a
shard, of one pass) and `row` its index among the rows that item yields. The plan is a pure
function of the config and seed, so a key names the same clip of the same pass in every
attempt of a run. Keys are kept as sorted disjoint ranges: a pass delivered in order is a
handful of ranges, whatever the corpus size.

Rank 0 keeps a `Ledger` of the keys trained on (gathered from every rank at each report) and
saves it in every training checkpoint; a restored run streams only what its ledger does not
hold (`remaining_items`), so it sees the clips an uninterrupted run would have seen. Pure
numpy: no Ray, no torch.
"""

from __future__ import annotations

import dataclasses

import numpy as np

ROW_SPAN = 1 << 20  # rows per work item a key can name (a Parquet shard holds fewer)


def clip_keys(seq, row) -> np.ndarray:
    """(N,) item indices, (N,) row indices -> (N,) int64 keys."""
    return np.asarray(seq, np.int64) * ROW_SPAN + np.asarray(row, np.int64)


@dataclasses.dataclass(frozen=True)
class Ranges:
    """A set of int64 keys as sorted, disjoint, non-adjacent half-open ranges [start, end)."""
    starts: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    ends: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))

    @classmethod
    def of(cls, keys) -> Ranges:
        k = np.unique(np.asarray(keys, np.int64))
        if not len(k):
            return cls()
        cut = np.flatnonzero(np.diff(k) != 1) + 1  # where a run of consecutive keys breaks
        return cls(k[np.r_[0, cut]], k[np.r_[cut - 1, len(k) - 1]] + 1)

    def __len__(self) -> int:
        return int((self.ends - self.starts).sum())

    def contains(self, keys) -> np.ndarray:
        """(N,) keys -> (N,) bool."""
        k = np.asarray(keys, np.int64)
        i = np.searchsorted(self.starts, k, side="right") - 1
        return (i >= 0) & (k < self.ends[np.maximum(i, 0)]) if len(self.starts) else np.zeros(k.shape, bool)

    def union(self, other: Ranges) -> Ranges:
        s, e = np.r_[self.starts, other.starts], np.r_[self.ends, other.ends]
        if not len(s):
            return Ranges()
        order = np.argsort(s, kind="stable")
        s, e = s[order], np.maximum.accumulate(e[order])
        new = np.r_[True, s[1:] > e[:-1]]  # a range that neither overlaps nor touches the ones before
        last = np.r_[np.flatnonzero(new)[1:] - 1, len(s) - 1]
        return Ranges(s[new], e[last])

    def clip(self, lo: int, hi: int) -> Ranges:
        """The keys in [lo, hi)."""
        s, e = np.maximum(self.starts, lo), np.minimum(self.ends, hi)
        keep = s < e
        return Ranges(s[keep], e[keep])

    def count(self, lo: int, hi: int) -> int:
        return len(self.clip(lo, hi))

    def to_list(self) -> list[list[int]]:
        return [[int(a), int(b)] for a, b in zip(self.starts, self.ends)]

    @classmethod
    def from_list(cls, pairs) -> Ranges:
        a = np.asarray(pairs, np.int64).reshape(-1, 2)
        return cls(a[:, 0].copy(), a[:, 1].copy())


class Ledger:
    """Rank 0's record of the keys trained on. `pass_starts[p]` is the seq at which pass p of
    the plan begins; the last entry is the plan's length."""

    def __init__(self, pass_starts: list[int]):
        self.pass_starts = np.asarray(pass_starts, np.int64)
        self.delivered = Ranges()
        self.repeats = np.zeros(max(1, len(pass_starts) - 1), np.int64)  # deliveries of a key already held
        self.restarts: list[dict] = []  # one per restore: see `restored`
        self.began: dict[int, int] = {}  # pass -> the step that first trained on a clip of it

    def pass_of(self, seq) -> np.ndarray:
        return np.clip(np.searchsorted(self.pass_starts, np.asarray(seq, np.int64), side="right") - 1,
                       0, len(self.repeats) - 1)

    def add(self, keys, step: int | None = None) -> int:
        """Record the keys of trained batches (of training step `step`); returns how many of them
        were repeats (held already, or twice among `keys`)."""
        k = np.asarray(keys, np.int64)
        if not len(k):
            return 0
        if step is not None:
            for p in np.unique(self.pass_of(k // ROW_SPAN)).tolist():
                self.began.setdefault(int(p), int(step))
        uniq, counts = np.unique(k, return_counts=True)
        again = np.where(self.delivered.contains(uniq), counts, counts - 1)
        if again.any():
            np.add.at(self.repeats, self.pass_of(uniq // ROW_SPAN), again)
        self.delivered = self.delivered.union(Ranges.of(uniq))
        return int(again.sum())

    def restored(self, step: int, last_logged_step: int | None = None, earlier: list[dict] | None = None) -> None:
        """A new attempt restored this ledger's checkpoint, at `step`. `last_logged_step`: the
        latest step the run had logged (any attempt): the steps between are trained again
        (at least that many; steps after the last log are not known). `earlier`: the restarts
        recorded so far (RUN_DIR/delivery.json), which also holds those of attempts whose
        checkpoints were never restored."""
        last = step if last_logged_step is None else max(step, int(last_logged_step))
        self.restarts = list(self.restarts if earlier is None else earlier) + [
            {"step": int(step), "delivered": len(self.delivered), "last_logged_step": last,
             "steps_redone_at_least": last - int(step)}]

    def state(self) -> dict:
        return {"pass_starts": self.pass_starts.tolist(), "delivered": self.delivered.to_list(),
                "repeats": self.repeats.tolist(), "restarts": list(self.restarts),
                "began": {str(p): s for p, s in self.began.items()}}

    @classmethod
    def from_state(cls, state: dict) -> Ledger:
        ledger = cls(state["pass_starts"])
        ledger.delivered = Ranges.from_list(state["delivered"])
        ledger.repeats = np.asarray(state["repeats"], np.int64)
        ledger.restarts = list(state.get("restarts", []))
        ledger.began = {int(p): int(s) for p, s in state.get("began", {}).items()}
        return ledger

    def passes(self) -> list[dict]:
        """Per pass of the plan: items planned, clips delivered, repeats, items of which no clip
        was delivered, the step that began it, and its state: "complete" (a clip of every item
        delivered), "partial" or "not started". Passes overlap in time: the trainer's local
        shuffle buffer holds clips of several of them, so a pass can finish after the next one
        began. A pass that stays partial once the run has moved on holds clips no step will see:
        the data stage's skipped ones, if all is well."""
        out = []
        for p in range(len(self.repeats)):
            lo, hi = int(self.pass_starts[p]), int(self.pass_starts[p + 1])
            got = self.delivered.clip(lo * ROW_SPAN, hi * ROW_SPAN)
            items_hit = len(np.unique(np.concatenate([np.arange(a // ROW_SPAN, (b - 1) // ROW_SPAN + 1)
                                                      for a, b in zip(got.starts, got.ends)]))) if len(got.starts) else 0
            out.append({"pass": p, "items": hi - lo, "delivered": len(got), "repeats": int(self.repeats[p]),
                        "undelivered_items": hi - lo - items_hit, "began_at_step": self.began.get(p),
                        "state": "complete" if items_hit == hi - lo else "partial" if items_hit else "not started"})
        return out


def report(ledger: Ledger) -> dict:
    """RUN_DIR/delivery.json: the passes' figures, the restarts, and the totals."""
    passes = ledger.passes()
    return {"passes": passes, "restarts": ledger.restarts,
            "delivered": len(ledger.delivered), "repeats": int(ledger.repeats.sum()),
            "steps_redone_at_least": sum(r.get("steps_redone_at_least", 0) for r in ledger.restarts),
            "passes_complete": sum(p["state"] == "complete" for p in passes)}


def remaining_items(n_items: int, delivered: Ranges, item_rows) -> tuple[list[int], dict[int, list[list[int]]]]:
    """What a restored stream reads: the plan's item indices (in plan order) that are not known
    to be whole in `delivered`, and for those partly delivered, the row ranges to leave out.
    `item_rows(seq)` is the number of rows item `seq` yields when the source knows it (a file
    or a scene: 1), else None: such an item is read again whole and its delivered rows left out.
    Items before the first key held and after the last are all kept, cheaply."""
    keep, skip = [], {}
    if not len(delivered.starts):
        return list(range(n_items)), {}
    touched = np.unique(np.concatenate([np.arange(a // ROW_SPAN, (b - 1) // ROW_SPAN + 1)
                                        for a, b in zip(delivered.starts, delivered.ends)]))
    touched_set = set(touched.tolist())
    for seq in range(n_items):
        if seq not in touched_set:
            keep.append(seq)
            continue
        rows = delivered.clip(seq * ROW_SPAN, (seq + 1) * ROW_SPAN)
        n = item_rows(seq)
        if n is not None and len(rows) >= n:
            continue  # whole: not read again
        keep.append(seq)
        skip[seq] = [[int(a - seq * ROW_SPAN), int(b - seq * ROW_SPAN)] for a, b in zip(rows.starts, rows.ends)]
    return keep, skip
