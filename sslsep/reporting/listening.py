"""The listening panel: for a few clips of the run's own source (real clips when it has
them), the mixture and what every convergence state makes of it, each as playable audio
beside its log-mel spectrogram, and the views the augmentation service draws for the clip.

The clips are the first `n` usable ones of the source in hash order of their ids (the same
clips on every machine, chosen from metadata: `hash_sample`). Each separator runs on the whole
clip; its channels within `augment.min_channel_db` of the mixture's power are the active ones
(the views draw on those), the rest are listed as silent. The views are the service's own
(`SeparationAugmenter`, run in this process) for epoch 0: exactly what training saw first.
Audio is Ogg Vorbis (soundfile), each channel scaled to the same peak so that a quiet channel
is audible; its level against the mixture is in the caption.
"""

from __future__ import annotations

import base64
import io

import numpy as np

from sslsep import figures
from sslsep.audio import peak_normalised
from sslsep.config import ExperimentConfig, replace, to_dict
from sslsep.views.builders import active_channels, energy_db

PEAK = 0.9


def audio_uri(x: np.ndarray, sample_rate: int) -> str:
    """(T,) float -> data URI of an Ogg Vorbis file, peak-normalised to PEAK."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, peak_normalised(x, PEAK), sample_rate, format="OGG", subtype="VORBIS")
    return "data:audio/ogg;base64," + base64.b64encode(buf.getvalue()).decode()


def logmel_images(batch: np.ndarray, cfg: ExperimentConfig) -> list[str]:
    """(N, T) waveforms -> N PNG data URIs of their log-mel spectrograms (one colour scale:
    80 dB below the loudest of them, so that levels compare across a clip's tiles)."""
    import torch

    from sslsep.audio import LogMel

    with torch.no_grad():
        mel = LogMel(cfg.audio)(torch.as_tensor(np.asarray(batch, np.float32))).numpy()  # (N, n_mels, frames)
    db = 10 * mel / np.log(10)
    top = float(db.max())
    out = []
    for m in db:
        fig, ax = figures.figure(2.3, 1.1)
        ax = ax[0][0]
        ax.imshow(m, origin="lower", aspect="auto", vmin=top - 80, vmax=top, cmap="magma", interpolation="nearest")
        ax.set_axis_off()
        out.append(figures.png_uri(fig, dpi=100))
    return out


def _tile(title: str, audio: str, image: str, caption: str = "") -> str:
    return (f'<div class="tile"><b>{figures.esc(title)}</b><img class="spec" alt="log-mel {figures.esc(title)}" '
            f'src="{image}"><audio controls preload="metadata" src="{audio}"></audio>'
            f'{f"<div class=note>{figures.esc(caption)}</div>" if caption else ""}</div>')


def _tiles(items: list[tuple[str, np.ndarray, str]], cfg: ExperimentConfig) -> str:
    """items: (title, waveform (T,), caption) -> a row of tiles."""
    if not items:
        return ""
    images = logmel_images(np.stack([x for _, x, _ in items]), cfg) if len({len(x) for _, x, _ in items}) == 1 \
        else [logmel_images(x[None], cfg)[0] for _, x, _ in items]
    return '<div class="tiles">' + "".join(
        _tile(t, audio_uri(x, cfg.audio.sample_rate), im, c) for (t, x, c), im in zip(items, images)) + "</div>"


def _views_section(cfg: ExperimentConfig, registry: str, clips: list[dict]) -> list[str]:
    """Per clip, a row of tiles of the views the service draws for it in epoch 0."""
    from sslsep.views.service import SeparationAugmenter

    aug = SeparationAugmenter(registry, to_dict(replace(cfg, {"separation.registry": registry}, origin="report")))
    out = aug({"clip_id": np.array([c["clip_id"] for c in clips]), "epoch": np.zeros(len(clips), np.int64),
               "audio": np.stack([c["audio"] for c in clips])})
    sections = []
    for i in range(len(clips)):
        items = []
        for v, view in enumerate(out["views"][i]):  # (V, crop)
            kind, sep, ch = out["view_kind"][i][v], out["view_separator"][i][v], out["view_channels"][i][v]
            what = "mixture crop" if kind == "mixture" else f"{kind} {ch} of {sep}"
            fell = out["view_fallback"][i][v]
            items.append((f"view {v + 1}: {what}", view, f"fell back to the mixture: {fell} misbehaved" if fell
                          else ""))
        sections.append(_tiles(items, cfg))
    return sections


def _where(cfg: ExperimentConfig) -> str:
    """The run's sources in words: their paths (or the synthetic scenes)."""
    from sslsep.config import source_entries

    return " + ".join(d.path or "the synthetic scenes" for _, _, d in source_entries(cfg.data))


def listening_panel(cfg: ExperimentConfig | None, registry: str, n_clips: int) -> str:
    """The panel's HTML: a block per clip (see the module docstring). Whatever cannot be
    shown (no config, the source unreachable from here, no separators) is said instead."""
    from sslsep import storage
    from sslsep.data.sources import hash_sample
    from sslsep.views.service import load_separators

    head = "<h2>Listening panel</h2>"
    if cfg is None:
        return head + '<p class="missing">no usable config.yaml: the clips and separators are unknown</p>'
    try:
        clips = hash_sample(cfg.data, cfg.audio, n_clips, only_ok=True)
    except Exception as e:  # the source moved, or is not reachable from here
        return head + (f'<p class="missing">the run\'s source ({figures.esc(_where(cfg))}) '
                       f'cannot be read from here: {figures.esc(e)}</p>')
    if not clips:
        return head + '<p class="missing">the source has no usable clip</p>'
    try:
        separators = load_separators(registry, []) if storage.exists(registry) else {}
    except Exception as e:
        separators = {}
        head += f'<p class="missing">separators ({figures.esc(registry)}) do not load: {figures.esc(e)}</p>'
    if not separators:
        head += f'<p class="missing">no separator registry at {figures.esc(registry)}: mixtures only</p>'
    import torch

    x = torch.as_tensor(np.stack([c["audio"] for c in clips]))  # (B, T)
    with torch.inference_mode():
        separated = {name: m(x).float().numpy() for name, m in sorted(separators.items())}  # (B, M, T)
    try:
        views = _views_section(cfg, registry, clips) if separators or cfg.augment.kinds == ["mixture"] else None
    except Exception as e:
        views, head = None, head + f'<p class="missing">the views could not be drawn: {figures.esc(e)}</p>'
    note = (f"<p class=note>{len(clips)} clips of {figures.esc(_where(cfg))} "
            f"(first usable in hash order of ids). Per convergence state, the channels within "
            f"{cfg.augment.min_channel_db:g} dB of the mixture's power (the ones views draw on); each channel "
            f"is scaled to the same peak (its level against the mixture in the caption). Views: what the "
            f"augmentation service draws for the clip in epoch 0 ({cfg.augment.views_per_clip} per clip, "
            f"kinds {', '.join(cfg.augment.kinds)}).</p>")
    blocks = []
    for i, clip in enumerate(clips):
        mix = clip["audio"]
        labels = ", ".join(clip.get("labels") or []) or "unlabelled"
        parts = [f'<div class="clip" data-clip="{figures.esc(clip["clip_id"])}"><h3>{figures.esc(clip["clip_id"])}'
                 f' <span class=note>({figures.esc(labels)})</span></h3>',
                 _tiles([("mixture", mix, "")], cfg)]
        for name, est in separated.items():
            act = active_channels(est[i], mix, cfg.augment.min_channel_db)
            rel = energy_db(est[i]) - energy_db(mix)
            items = [(f"{name} channel {c}", est[i][c], f"{rel[c]:+.1f} dB vs mixture") for c in np.flatnonzero(act)]
            silent = [str(c) for c in np.flatnonzero(~act)]
            parts.append(f"<p><b>{figures.esc(name)}</b>: {int(act.sum())} active of {len(act)} channels"
                         + (f"; silent: {', '.join(silent)}" if silent else "") + "</p>" + _tiles(items, cfg))
        if views is not None:
            parts.append("<p><b>views drawn (epoch 0)</b></p>" + views[i])
        blocks.append("".join(parts) + "</div>")
    return head + note + "".join(blocks)
