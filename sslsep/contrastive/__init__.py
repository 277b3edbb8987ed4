"""Contrastive stage: audio encoder and the two self-supervised objectives (pure torch)."""

from sslsep.contrastive.encoder import (ARCHS, MAX_FRAME_HOP_S, POOLS, AudioEncoder,
                                        build_encoder, load_encoder, save_encoder)
from sslsep.contrastive.losses import (BilinearSimilarity, CoincidenceHead, all_gather_with_grad,
                                       coincidence_accuracy, coincidence_loss, coincidence_pairs,
                                       joint_loss, multiview_nt_xent)

__all__ = [
    "ARCHS", "MAX_FRAME_HOP_S", "POOLS", "AudioEncoder", "BilinearSimilarity", "CoincidenceHead",
    "all_gather_with_grad", "build_encoder", "coincidence_accuracy", "coincidence_loss",
    "coincidence_pairs", "joint_loss", "load_encoder", "multiview_nt_xent", "save_encoder",
]
