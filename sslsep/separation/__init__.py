"""Sound separation: TDCN++ masking separator, MixIT loss and separation metrics (pure torch)."""

from sslsep.separation.metrics import (mean_valid, multi_source_si_snri, pairwise_si_snr,
                                       si_snr, single_source_si_snr, valid_refs)
from sslsep.separation.mixit import mixing_matrices, mixit_loss, mixture_of_mixtures
from sslsep.separation.model import (SIZES, Separator, build_separator, load_checkpoint,
                                     load_separator, mixture_consistency, save_separator)

__all__ = [
    "SIZES", "Separator", "build_separator", "load_checkpoint", "load_separator",
    "mean_valid", "mixing_matrices", "mixit_loss", "mixture_consistency",
    "mixture_of_mixtures", "multi_source_si_snri", "pairwise_si_snr", "save_separator",
    "si_snr", "single_source_si_snr", "valid_refs",
]
