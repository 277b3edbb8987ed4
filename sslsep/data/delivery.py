"""What the training stream delivered, across restarts: which clips of which pass reached a
training step, which twice, which never.

A clip of the stream is named by its *key*: its position in the stream's plan counted in rows
(`sslsep.data.sources.stream_plan`: work items, pass after pass, each a file, a scene or a
shard of known rows; item `seq` holds keys [base[seq], base[seq] + rows[seq]) and its row `i`
is key base[seq] + i). The plan is a pure function of the config and seed, so a key names the
same clip of the same pass in every attempt of a run. Keys are kept as sorted disjoint ranges:
a pass delivered in order is one range, whatever the corpus size.

Rank 0 keeps a `Ledger` of the keys trained on (gathered from every rank at each report) and
saves it in every training checkpoint; a restored run streams only what its ledger does not
hold (`remaining_items`), so it sees the clips an uninterrupted run would have seen. Pure
numpy: no Ray, no torch.
"""

from __future__ import annotations

import dataclasses

import numpy as np


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

    def held_below(self, x) -> np.ndarray:
        """(N,) keys -> (N,) how many held keys are < each (vectorized)."""
        x = np.asarray(x, np.int64)
        # with an empty range in front of all keys, every key has a range starting at or before it
        low = np.iinfo(np.int64).min
        starts, ends = np.r_[low, self.starts], np.r_[low, self.ends]
        before = np.r_[0, np.cumsum(ends - starts)]  # (R + 2,) keys held in the ranges before j
        j = np.searchsorted(starts, x, side="right") - 1  # the last range starting at or before x
        return before[j] + np.clip(x - starts[j], 0, ends[j] - starts[j])

    def to_list(self) -> list[list[int]]:
        return [[int(a), int(b)] for a, b in zip(self.starts, self.ends)]

    @classmethod
    def from_list(cls, pairs) -> Ranges:
        a = np.asarray(pairs, np.int64).reshape(-1, 2)
        return cls(a[:, 0].copy(), a[:, 1].copy())


class Ledger:
    """Rank 0's record of the keys trained on. `pass_starts[p]` is the key at which pass p of
    the plan begins; the last entry is the plan's number of keys."""

    def __init__(self, pass_starts: list[int]):
        self.pass_starts = np.asarray(pass_starts, np.int64)
        self.delivered = Ranges()
        self.repeats = np.zeros(max(1, len(pass_starts) - 1), np.int64)  # deliveries of a key already held
        self.restarts: list[dict] = []  # one per restore: see `restored`
        self.began: dict[int, int] = {}  # pass -> the step that first trained on a clip of it

    def pass_of(self, keys) -> np.ndarray:
        return np.clip(np.searchsorted(self.pass_starts, np.asarray(keys, np.int64), side="right") - 1,
                       0, len(self.repeats) - 1)

    def add(self, keys, step: int | None = None) -> int:
        """Record the keys of trained batches (of training step `step`); returns how many of them
        were repeats (held already, or twice among `keys`)."""
        k = np.asarray(keys, np.int64)
        if not len(k):
            return 0
        if step is not None:
            for p in np.unique(self.pass_of(k)).tolist():
                self.began.setdefault(int(p), int(step))
        uniq, counts = np.unique(k, return_counts=True)
        again = np.where(self.delivered.contains(uniq), counts, counts - 1)
        if again.any():
            np.add.at(self.repeats, self.pass_of(uniq), again)
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
    def from_state(cls, state: dict, pass_starts: list[int] | None = None) -> Ledger:
        """The ledger of a checkpoint; with `pass_starts`, on the current plan's passes (a
        longer schedule plans more passes; the keys of the first ones are the same)."""
        ledger = cls(state["pass_starts"] if pass_starts is None else pass_starts)
        ledger.delivered = Ranges.from_list(state["delivered"])
        repeats = np.asarray(state["repeats"], np.int64)
        n = min(len(repeats), len(ledger.repeats))
        ledger.repeats[:n] = repeats[:n]
        ledger.repeats[n - 1] += repeats[n:].sum()  # a shorter plan: the passes it drops fold into its last
        ledger.restarts = list(state.get("restarts", []))
        ledger.began = {int(p): int(s) for p, s in state.get("began", {}).items()}
        return ledger

    def passes(self) -> list[dict]:
        """Per pass of the plan: clips planned, delivered, repeats, never delivered, the step
        that began it, and its state: "complete", "partial" or "not started". Passes overlap in
        time: the trainer's local shuffle buffer holds clips of several of them, so a pass can
        finish after the next one began. Clips that stay undelivered once the run has moved on
        are clips no step will see: the data stage's skipped ones, if all is well."""
        out = []
        for p in range(len(self.repeats)):
            lo, hi = int(self.pass_starts[p]), int(self.pass_starts[p + 1])
            got = self.delivered.count(lo, hi)
            out.append({"pass": p, "clips": hi - lo, "delivered": got, "repeats": int(self.repeats[p]),
                        "undelivered": hi - lo - got, "began_at_step": self.began.get(p),
                        "state": "complete" if got == hi - lo else "partial" if got else "not started"})
        return out


def report(ledger: Ledger) -> dict:
    """RUN_DIR/delivery.json: the passes' figures, the restarts, and the totals."""
    passes = ledger.passes()
    return {"passes": passes, "restarts": ledger.restarts,
            "delivered": len(ledger.delivered), "repeats": int(ledger.repeats.sum()),
            "steps_redone_at_least": sum(r.get("steps_redone_at_least", 0) for r in ledger.restarts),
            "passes_complete": sum(p["state"] == "complete" for p in passes)}


def remaining_items(bases, delivered: Ranges) -> tuple[list[int], dict[int, list[list[int]]]]:
    """What a restored stream reads: `bases` (n_items + 1,) are the items' first keys (the last
    entry the plan's end). Returns the item indices, in plan order, that are not whole in
    `delivered`, and for those partly delivered the row ranges to leave out. Vectorized; only
    the partly delivered items are visited one by one."""
    b = np.asarray(bases, np.int64)
    held = delivered.held_below(b)  # (n_items + 1,)
    got, rows = np.diff(held), np.diff(b)  # (n_items,) keys held, keys planned
    keep = np.flatnonzero(got < rows)
    skip = {}
    for seq in np.flatnonzero((got > 0) & (got < rows)).tolist():
        part = delivered.clip(int(b[seq]), int(b[seq + 1]))
        skip[seq] = [[int(x - b[seq]), int(y - b[seq])] for x, y in zip(part.starts, part.ends)]
    return keep.tolist(), skip
