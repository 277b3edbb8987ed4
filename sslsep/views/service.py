"""The separation augmentation service: a Ray Data actor pool that turns clips into views.

    clips (tasks: read, decode) -> map_batches(SeparationAugmenter, ActorPoolStrategy)
        -> rows {clip_id, epoch, views f32[V, crop], view_kind[V], view_separator[V],
                 view_channels[V], view_fallback[V], fallbacks f32[K], labels}

Separate once, view many. For each clip of a batch the actor first draws its views (crop,
separator, kind; `draw_views`, seeded by (seed, epoch, clip id)), then runs each drawn
separator once, batched, on the drawn spans only (crop + `augment.context_seconds` each
side; the whole clip where a clip's spans for one separator would add up to more), and
last picks channels among the usable ones of each separated crop (then, if configured, mix-back
with another clip of the batch and a random gain: `augment_views`). Mixture views and separators
no view drew cost nothing. The batch is copied to the device once; spans are
cut there; separators run under bf16 autocast with `augment.precision=bf16`.
Bad output (non-finite, or a channel far louder than the mixture: a diverged checkpoint, a
pathological clip) never reaches the trainer: the view falls back to the mixture, is named in
`view_fallback` and counted per separator (`fallbacks`: per clip, one column per separator of
`separator_names`); a separator that is bad for most of its views stops the job, naming it.
Actors that die are restarted by Ray Data and their batches retried: the same seeds give the
same views. Metrics (ray.util.metrics, exported to the Ray dashboard / Prometheus):
sslsep_views_total, sslsep_clips_total, sslsep_separator_calls_total{separator},
sslsep_separated_seconds_total{separator}, sslsep_separator_fallbacks_total{separator},
sslsep_separator_latency_s, sslsep_augmenter_idle_s.
"""

from __future__ import annotations

import time
import zlib

import numpy as np
import torch

from sslsep.checkpoint import load_module
from sslsep.config import ExperimentConfig, from_dict, to_dict
from sslsep.data.sources import object_column
from sslsep.separation.model import Separator
from sslsep.separation.registry import read_registry, select
from sslsep.views.builders import (ViewDraw, active_channels, augment_views, bad_output, draw_views,
                                   render_views, resolve_views, span_start)

VIEW_COLUMNS = ("clip_id", "epoch", "views", "view_kind", "view_separator", "view_channels", "view_fallback",
                "labels", "key")


def load_separators(registry_uri: str, wanted: list[str], device: str = "cpu") -> dict[str, Separator]:
    """Registry entries -> {name: Separator in eval mode}; a bad checkpoint names its file."""
    entries = select(read_registry(registry_uri), wanted)  # names, or steps as "500"
    models = {}
    for e in entries:
        try:
            models[e["name"]] = load_module(Separator, e["uri"], device)
        except Exception as err:
            raise ValueError(f"separator {e['name']!r} ({e['uri']}) does not load: {err}") from None
    return models


def view_rng(seed: int, epoch: int, clip_id: str) -> np.random.Generator:
    """The generator of one clip's views in one epoch: a new epoch, new views; a retry, the same."""
    return np.random.default_rng([seed, int(epoch), zlib.crc32(clip_id.encode())])


def separator_names(cfg: ExperimentConfig) -> list[str]:
    """The separators the views draw on, in the order of the `fallbacks` column ([] for
    mixture-only views)."""
    if cfg.augment.kinds == ["mixture"]:
        return []
    return sorted(e["name"] for e in select(read_registry(cfg.separation.registry), cfg.augment.separators))


def _in_ray() -> bool:
    try:
        import ray

        return ray.is_initialized()
    except ImportError:
        return False


class _ServiceMetrics:
    """ray.util.metrics, exported by every node's metrics agent to Prometheus/Grafana."""

    def __init__(self):
        from ray.util import metrics

        self.views = metrics.Counter("sslsep_views_total", "views produced by the augmentation service")
        self.clips = metrics.Counter("sslsep_clips_total", "clips turned into views")
        self.calls = metrics.Counter("sslsep_separator_calls_total", "separator forward calls (one per "
                                     "separator and batch)", tag_keys=("separator",))
        self.seconds = metrics.Counter("sslsep_separated_seconds_total", "seconds of audio separated "
                                       "(spans, context included)", tag_keys=("separator",))
        self.fallbacks = metrics.Counter("sslsep_separator_fallbacks_total", "views whose separated crop was "
                                         "bad output and fell back to the mixture", tag_keys=("separator",))
        self.latency = metrics.Histogram("sslsep_separator_latency_s", "separator forward time per batch",
                                         boundaries=[0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30])
        self.idle = metrics.Histogram("sslsep_augmenter_idle_s", "time an actor waited for its next batch "
                                      "(its input queue was empty)", boundaries=[0.001, 0.01, 0.1, 1, 10, 100])


class SeparatorFailure(RuntimeError):
    """A separator produced bad output for most of the views drawn from it."""


MIN_VIEWS_TO_JUDGE = 32  # views of a separator before its bad-output share can stop the job


class SeparationAugmenter:
    """Callable class for Dataset.map_batches: clip batch -> view batch (one row per clip).
    `counts` keeps, per separator, the views drawn, the seconds separated, the forward calls
    and the fallbacks (also exported as metrics when running in Ray)."""

    def __init__(self, registry: str, cfg: dict, columns: list[str] | None = None):
        self.cfg: ExperimentConfig = from_dict(cfg, "augmenter config")
        self.columns = columns  # the output columns a consumer reads (None: all)
        aug, a = self.cfg.augment, self.cfg.audio
        torch.set_num_threads(aug.torch_threads)
        self.device = "cuda" if torch.cuda.is_available() and aug.gpus_per_actor > 0 else "cpu"
        # mixture-only views (the no-separation control) need no separator at all
        self.models = {} if aug.kinds == ["mixture"] else load_separators(registry, aug.separators, self.device)
        self.names = sorted(self.models)
        self.crop_len = int(round(min(aug.crop_seconds, a.clip_seconds) * a.sample_rate))
        self.margin = int(round(aug.context_seconds * a.sample_rate))
        self.counts = {n: {"views": 0, "bad": 0, "calls": 0, "separated_s": 0.0} for n in self.names}
        self.augmenting = aug.mix_prob > 0 or any(aug.gain_db)  # waveform augmentations after rendering
        self._last_return = None
        self.metrics = _ServiceMetrics() if _in_ray() else None  # in-process use has no exporter

    @torch.inference_mode()
    def run_separator(self, name: str, spans: torch.Tensor) -> np.ndarray:
        """spans (N, L) on the device -> separated (N, M, L) float32 on the host."""
        with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.cfg.augment.precision == "bf16"):
            out = self.models[name](spans)
        c = self.counts[name]
        c["calls"] += 1
        c["separated_s"] += spans.numel() / self.cfg.audio.sample_rate
        if self.metrics:
            self.metrics.calls.inc(1, tags={"separator": name})
            self.metrics.seconds.inc(spans.numel() / self.cfg.audio.sample_rate, tags={"separator": name})
        return out.float().cpu().numpy()

    def separate_views(self, x: torch.Tensor, draws: list[list[ViewDraw]]) -> list[list[np.ndarray | None]]:
        """x (B, T) on the device, draws per clip -> per clip and view the separated channels of
        the view's crop (M, crop), None for mixture draws. Each drawn separator runs once on
        the spans of the views that drew it, or on the whole clip where those spans would add
        up to at least the clip (then cheaper, and exact): at most two batched calls each."""
        T, crop = x.shape[1], self.crop_len
        L = min(T, crop + 2 * self.margin)
        out: list[list[np.ndarray | None]] = [[None] * len(d) for d in draws]
        # (separator, span length) -> [(clip, its views, span start)]
        jobs: dict[tuple[str, int], list[tuple[int, list[int], int]]] = {}
        for i, clip_draws in enumerate(draws):
            for name in sorted({d.separator for d in clip_draws if d.separator}):
                views = [v for v, d in enumerate(clip_draws) if d.separator == name]
                if len(views) * L >= T:
                    jobs.setdefault((name, T), []).append((i, views, 0))
                else:
                    for v in views:
                        jobs.setdefault((name, L), []).append((i, [v], span_start(clip_draws[v].offset, crop, T,
                                                                                   self.margin)))
        for (name, length), todo in sorted(jobs.items()):
            rows = torch.tensor([i for i, _, _ in todo], device=x.device)
            starts = torch.tensor([s for _, _, s in todo], device=x.device)
            spans = x[rows[:, None], starts[:, None] + torch.arange(length, device=x.device)]  # (N, length)
            est = self.run_separator(name, spans)  # (N, M, length)
            for (i, views, start), e in zip(todo, est):
                for v in views:
                    o = draws[i][v].offset - start
                    out[i][v] = e[:, o:o + crop]  # (M, crop)
        return out

    def other_crops(self, rng: np.random.Generator, audio: np.ndarray, i: int, n: int) -> np.ndarray | None:
        """audio (B, T) of the batch -> (n, crop): for each of clip i's n views, a crop of another
        clip of the batch at a random offset (the mix-back background); None for a batch of one."""
        B, T = audio.shape
        if B < 2:
            return None
        js = (i + 1 + rng.integers(0, B - 1, size=n)) % B  # (n,) never i
        offsets = rng.integers(0, T - self.crop_len + 1, size=n)  # (n,)
        return np.stack([audio[j, o:o + self.crop_len] for j, o in zip(js, offsets)])  # (n, crop)

    def _check(self, name: str, bad: bool) -> None:
        c = self.counts[name]
        c["views"] += 1
        c["bad"] += int(bad)
        if bad and self.metrics:
            self.metrics.fallbacks.inc(1, tags={"separator": name})
        if c["views"] >= MIN_VIEWS_TO_JUDGE and c["bad"] > self.cfg.augment.max_bad_share * c["views"]:
            uri = next((e["uri"] for e in select(read_registry(self.cfg.separation.registry), [name])), name)
            raise SeparatorFailure(
                f"separator {name!r} ({uri}) gave non-finite or exploding output (a channel over "
                f"augment.max_channel_db={self.cfg.augment.max_channel_db:g} dB above the mixture) for "
                f"{c['bad']} of {c['views']} views: a diverged checkpoint? Leave it out with augment.separators")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        now = time.perf_counter()
        m = self.metrics
        if m and self._last_return is not None:
            m.idle.observe(now - self._last_return)
        aug = self.cfg.augment
        audio = batch["audio"]  # (B, T)
        B, T = audio.shape
        epochs = batch["epoch"] if "epoch" in batch else np.zeros(B, np.int64)
        rngs = [view_rng(self.cfg.seed, int(e), str(c)) for c, e in zip(batch["clip_id"], epochs)]
        draws = [draw_views(r, aug.views_per_clip, aug.kinds, self.names, T, self.crop_len, aug.same_crop,
                            aug.across_separators, aug.anchor_mixture) for r in rngs]
        t0 = time.perf_counter()
        x = torch.from_numpy(np.ascontiguousarray(audio)).to(self.device)  # the batch's one host-to-device copy
        separated = self.separate_views(x, draws) if self.models else [[None] * len(d) for d in draws]
        if m and self.models:
            m.latency.observe(time.perf_counter() - t0)
        views, kinds, seps, chans, fell = [], [], [], [], []
        fallbacks = np.zeros((B, len(self.names)), np.float32)  # (B, K) bad views per clip and separator
        for i, (clip_draws, crops) in enumerate(zip(draws, separated)):
            active, failed = [], []
            for d, crop in zip(clip_draws, crops):
                mix = audio[i, d.offset:d.offset + self.crop_len]
                bad = crop is not None and bad_output(crop, mix, aug.max_channel_db)
                if d.separator:
                    self._check(d.separator, bad)
                if bad:
                    fallbacks[i, self.names.index(d.separator)] += 1
                failed.append(d.separator if bad else "")
                active.append(None if crop is None or bad else active_channels(crop, mix, aug.min_channel_db))
            specs = resolve_views(rngs[i], clip_draws, aug.kinds, active)
            rendered = render_views(audio[i], specs, self.crop_len, crops)  # (V, crop)
            if self.augmenting:
                rendered = augment_views(rngs[i], rendered, self.other_crops(rngs[i], audio, i, len(specs)),
                                         aug.gain_db, aug.mix_prob, aug.mix_db)
            views.append(rendered)
            kinds.append([s.kind for s in specs])
            seps.append([s.separator for s in specs])
            chans.append([s.channels_text for s in specs])
            fell.append(failed)
        out = {"clip_id": batch["clip_id"], "epoch": np.asarray(epochs, np.int64),
               "views": np.stack(views),  # (B, V, crop)
               "view_kind": object_column(kinds), "view_separator": object_column(seps),
               "view_channels": object_column(chans), "view_fallback": object_column(fell)}
        if self.names:
            out["fallbacks"] = fallbacks
        for key in ("labels", "key"):  # key: the clip's place in the stream (sslsep.data.delivery)
            if key in batch:
                out[key] = batch[key]
        if m:
            m.clips.inc(B)
            m.views.inc(B * aug.views_per_clip)
        self._last_return = time.perf_counter()
        return {k: out[k] for k in self.columns} if self.columns else out


def view_dataset(cfg: ExperimentConfig, *, clips=None, epochs: int = 1, clips_needed: int = 0,
                 columns: list[str] | None = None, plan=None, resume=None):
    """clips (default: the configured source's usable clips, `epochs` passes over them in one
    stream, or enough for `clips_needed` (`clip_dataset`), each pass in its own order and with
    its own views) -> the streaming view Dataset of the separators in `separation.registry`.
    `columns` keeps only those, inside the actor: a
    `select_columns` after the pool would be one more task step that copies every view and
    waits for a CPU behind the decode tasks (on 2 cores, until the whole source was read).
    `plan` and `resume`: the stream's items and the clips already trained on (`clip_dataset`)."""
    import ray.data

    from sslsep.data.sources import clip_dataset, usable

    aug, registry = cfg.augment, cfg.separation.registry
    if aug.kinds != ["mixture"]:
        if not registry:
            raise ValueError("views need separators: key 'separation.registry' is empty "
                             "(--registry RUN_DIR/registry.json, or train them first)")
        load_separators(registry, aug.separators)  # fail at start, on the driver, not in a hung pool
    cpus = cfg.data.cpus_per_task  # the same for every task step, so that Ray fuses them
    if clips is None:  # a caller's clips need clip_id and audio (labels and epoch if it has them)
        clips = usable(clip_dataset(cfg.data, cfg.audio, shuffle_seed=cfg.seed, epochs=epochs,
                                    clips_needed=clips_needed, plan=plan, resume=resume), cpus)
        clips = clips.select_columns(["clip_id", "epoch", "audio", "labels", "key"], num_cpus=cpus)
    # Ray Data already restarts dead actors without limit and retries their batches;
    # only a different limit needs passing (through a deprecated hook, hence only then)
    extra = {} if aug.max_restarts == -1 else {"ray_remote_args_fn": lambda: {"max_restarts": aug.max_restarts}}
    return clips.map_batches(
        SeparationAugmenter, fn_constructor_kwargs={"registry": registry, "cfg": to_dict(cfg), "columns": columns},
        batch_size=aug.batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=aug.min_actors, max_size=aug.max_actors),
        num_cpus=aug.cpus_per_actor, num_gpus=aug.gpus_per_actor or None, resources=aug.resources or None, **extra)
