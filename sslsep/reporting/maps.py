"""Maps of the frozen embeddings of the evaluation clips (RUN_DIR/embeddings.npz), one per
extractor side by side (the log-mel and random-init baselines beside each variant), coloured
by label: t-SNE (scikit-learn; perplexity 30, PCA init, seed 0) or PCA. Each extractor's
embeddings are standardised first, as the shallow classifiers see them. Multi-label clips
take the colour of their first label in class order."""

from __future__ import annotations

import json

import numpy as np

from sslsep import figures

METHODS = ("tsne", "pca")


def project(x: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """(N, D) -> (N, 2)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = np.asarray(x, np.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    if method == "pca" or len(x) < 5:
        return PCA(n_components=2, random_state=seed).fit_transform(x)
    return TSNE(n_components=2, perplexity=min(30.0, (len(x) - 1) / 3), init="pca", random_state=seed,
                max_iter=750).fit_transform(x)


def embedding_maps(emb: dict | None, method: str = "tsne") -> str:
    title = f"Frozen embeddings of the evaluation clips ({'t-SNE' if method == 'tsne' else 'PCA'})"
    if emb is None:
        return figures.empty(title, "no RUN_DIR/embeddings.npz (the evaluation stage did not run, or ran before "
                                    "it kept embeddings)")
    names = json.loads(str(emb["extractors"]))
    targets, classes = emb["targets"], [str(c) for c in emb["classes"]]
    colour = np.where(targets.any(1), targets.argmax(1), -1)  # (N,) first label; -1 unlabelled
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = figures.figure(4.2 * cols, 3.6 * rows + 0.6, ncols=cols, nrows=rows)
    cmap = [figures.PALETTE[i % 10] for i in range(len(classes))]
    for k, ax in enumerate(axes.flat):
        if k >= len(names):
            ax.set_axis_off()
            continue
        xy = project(emb[f"x{k}"], method)
        for c in range(len(classes)):
            pts = xy[colour == c]
            ax.scatter(pts[:, 0], pts[:, 1], s=6, color=cmap[c], label=classes[c], alpha=0.8, linewidths=0,
                       marker="o" if c < 10 else "^")
        ax.set_title(names[k], fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6), fontsize=8, markerscale=2)
    kind = "multi-label: coloured by each clip's first label" if bool(emb["multilabel"]) else "coloured by class"
    return figures.img(fig, title, f"{len(targets)} clips, {kind}; embeddings standardised per extractor")
