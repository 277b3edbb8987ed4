"""Feature extractors and the embedding pass over labelled clips.

An extractor is a module ``audio (B, T) -> (B, D)`` with a ``dim`` attribute, built from a
spec string (:func:`load_extractor`):

* ``"logmel"``: log-mel statistics, the mean and std over time of each band (2 x n_mels);
* ``"random"``: an encoder of the configured arch with random weights (seeded), frozen;
* anything else: an encoder checkpoint (local or s3://, ``sslsep.contrastive.load_encoder``).

Encoders pool their frame embeddings (B, F, D) as ``evaluation.pool`` says: ``encoder`` uses
the encoder's own pooling (``embed``), ``mean`` / ``max`` / ``meanmax`` (mean + max, the
encoder's definition) pool ``frames`` here.

:class:`Embedder` runs several extractors over a clip batch at once, so a clip is decoded once
for all of them; it is both the in-process loop's worker and the Ray Data actor class of
:func:`embed_with_ray`. Only rows whose status is in KEEP_STATUSES are embedded; the others
come back as named skips, so clips in = clips accounted for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from sslsep.audio import KEEP_STATUSES, LogMel
from sslsep.config import AudioConfig, ExperimentConfig, from_dict, to_dict
from sslsep.data.sources import object_column

LOGMEL, RANDOM = "logmel", "random"
META = ("clip_id", "labels", "fold", "group", "status", "detail")


class LogMelStats(nn.Module):
    """(B, T) -> (B, 2 * n_mels): per-band mean and std of the log-mel over time."""

    def __init__(self, audio: AudioConfig):
        super().__init__()
        self.logmel = LogMel(audio)
        self.dim = 2 * audio.n_mels

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = self.logmel(audio)  # (B, n_mels, frames)
        return torch.cat([x.mean(dim=2), x.std(dim=2, unbiased=False)], dim=1)  # (B, 2 * n_mels)


class PooledEncoder(nn.Module):
    """A frozen AudioEncoder with the evaluation's clip pooling: (B, T) -> (B, D)."""

    def __init__(self, encoder, pool: str = "encoder"):
        super().__init__()
        if pool not in ("encoder", "mean", "max", "meanmax"):
            raise ValueError(f"pool must be encoder, mean, max or meanmax; got {pool!r}")
        self.encoder, self.pool, self.dim = encoder.eval(), pool, encoder.embed_dim

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if self.pool == "encoder":
            return self.encoder.embed(audio)  # (B, D)
        fr = self.encoder.frames(audio)  # (B, F, D)
        if self.pool == "mean":
            return fr.mean(dim=1)
        if self.pool == "max":
            return fr.amax(dim=1)
        return fr.mean(dim=1) + fr.amax(dim=1)  # (B, D)


def random_encoder(cfg: ExperimentConfig):
    """The configured encoder (pretrain.* and audio.*) with random weights from
    evaluation.seed; the global torch RNG is left as it was."""
    from sslsep.contrastive.encoder import build_encoder

    pre, a = cfg.pretrain, cfg.audio
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.evaluation.seed)
        return build_encoder(pre.arch, embed_dim=pre.embed_dim, proj_dim=pre.proj_dim, pool=pre.pool,
                             sample_rate=a.sample_rate, n_mels=a.n_mels, win_ms=a.win_ms, hop_ms=a.hop_ms,
                             f_min=a.f_min, f_max=min(a.f_max, a.sample_rate / 2)).eval()


def load_extractor(spec: str, cfg: ExperimentConfig, device: str = "cpu") -> nn.Module:
    """A spec ('logmel', 'random' or a checkpoint URI) -> a frozen extractor on `device`."""
    if spec == LOGMEL:
        model = LogMelStats(cfg.audio)
    else:
        if spec == RANDOM:
            encoder = random_encoder(cfg)
        else:
            from sslsep.contrastive.encoder import load_encoder

            encoder = load_encoder(spec)
            rate = encoder.config["sample_rate"]
            if rate != cfg.audio.sample_rate:
                raise ValueError(f"encoder {spec} expects {rate} Hz audio but audio.sample_rate is "
                                 f"{cfg.audio.sample_rate}; set --set audio.sample_rate={rate}")
        model = PooledEncoder(encoder, cfg.evaluation.pool)
    for p in model.parameters():
        p.requires_grad_(False)
    # NHWC conv kernels, as in training: 1.45x the clips/s of a compact encoder in fp32 on an
    # AVX2 CPU (docs/benchmarks.md); a no-op for extractors without 4-D weights
    return model.to(device, memory_format=torch.channels_last).eval()


class Embedder:
    """Clip batch (numpy columns, see sslsep.data.sources) -> the metadata columns plus one
    (B, D) float32 column ``emb_<i>`` per extractor (in the order of `specs`). Rows that are
    not kept are not embedded: their embedding rows are zeros and their status says why."""

    def __init__(self, specs: dict[str, str], cfg: dict | ExperimentConfig, device: str | None = None,
                 threads: int | None = None):
        self.cfg = cfg if isinstance(cfg, ExperimentConfig) else from_dict(cfg, "embedder config")
        if threads:
            torch.set_num_threads(threads)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.names = list(specs)
        self.models = [load_extractor(specs[n], self.cfg, self.device) for n in self.names]

    @torch.inference_mode()
    def embed(self, audio: np.ndarray) -> list[np.ndarray]:
        """(B, T) float32 -> one (B, D_i) float32 array per extractor."""
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).to(self.device)
        return [m(x).float().cpu().numpy() for m in self.models]

    def __call__(self, batch: dict) -> dict:
        keep = np.isin(batch["status"].astype(str), KEEP_STATUSES)
        n = len(keep)
        out = {k: batch[k] for k in META if k != "labels"}
        # Ray hands list columns over as arrays of arrays; lists again keep them Arrow-typed
        out["labels"] = object_column([[str(v) for v in x] for x in batch["labels"]])
        embedded = self.embed(batch["audio"][keep]) if keep.any() else [None] * len(self.models)
        for i, (model, emb) in enumerate(zip(self.models, embedded)):
            col = np.zeros((n, model.dim), np.float32)
            if emb is not None:
                col[keep] = emb
            out[f"emb_{i}"] = col
        return out


@dataclass
class EmbeddedSet:
    """Kept clips with their embeddings (rows sorted by clip id) and every skipped clip."""
    clip_ids: list[str] = field(default_factory=list)
    labels: list[list[str]] = field(default_factory=list)
    folds: list[int] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    features: dict[str, np.ndarray] = field(default_factory=dict)   # extractor -> (N, D)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (clip id, status, detail)

    @property
    def total(self) -> int:
        return len(self.clip_ids) + len(self.skipped)


def _collect(batches, names: list[str]) -> EmbeddedSet:
    rows, feats = [], {n: [] for n in names}
    out = EmbeddedSet()
    for b in batches:
        for j in range(len(b["clip_id"])):
            status = str(b["status"][j])
            if status not in KEEP_STATUSES:
                out.skipped.append((str(b["clip_id"][j]), status, str(b["detail"][j])))
                continue
            rows.append((str(b["clip_id"][j]), [str(x) for x in b["labels"][j]], int(b["fold"][j]),
                         str(b["group"][j])))
            for i, n in enumerate(names):
                feats[n].append(b[f"emb_{i}"][j])
    # Ray Data does not keep row order: sort, so splits (and results) do not depend on it
    order = sorted(range(len(rows)), key=lambda i: rows[i][0])
    out.clip_ids = [rows[i][0] for i in order]
    out.labels = [rows[i][1] for i in order]
    out.folds = [rows[i][2] for i in order]
    out.groups = [rows[i][3] for i in order]
    for n in names:
        out.features[n] = (np.stack([feats[n][i] for i in order]).astype(np.float32) if rows
                           else np.zeros((0, 0), np.float32))
    out.skipped.sort()
    return out


def embed_in_process(rows, embedder: Embedder, batch_size: int) -> EmbeddedSet:
    """Clip rows (an iterator of dicts, e.g. sslsep.data.sources.iter_clips) -> EmbeddedSet."""
    from sslsep.data.sources import _stack

    def batches():
        buf = []
        for r in rows:
            buf.append(r)
            if len(buf) == batch_size:
                yield embedder(_stack(buf))
                buf = []
        if buf:
            yield embedder(_stack(buf))

    return _collect(batches(), embedder.names)


def embed_with_ray(ds, specs: dict[str, str], cfg: ExperimentConfig) -> EmbeddedSet:
    """A clip Dataset (sslsep.data.sources.clip_dataset, skipped rows included) -> EmbeddedSet,
    by Ray Data batch inference: an actor pool of :class:`Embedder`, fractional CPUs."""
    import ray.data

    ev = cfg.evaluation
    # device None: CUDA where Ray gave the actor a GPU (it hides GPUs from the others)
    out = ds.map_batches(
        Embedder, fn_constructor_kwargs={"specs": dict(specs), "cfg": to_dict(cfg), "device": None,
                                         "threads": ev.torch_threads},
        batch_size=ev.embed_batch, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=ev.min_actors, max_size=ev.max_actors),
        num_cpus=ev.cpus_per_actor, num_gpus=ev.gpus_per_actor or None, resources=ev.resources or None)
    return _collect(out.iter_batches(batch_size=256, batch_format="numpy"), list(specs))
