"""Shallow evaluation of frozen embeddings: extractors, classifiers, metrics, protocols, table.

    from sslsep.evaluation import evaluate_encoders, extractor_specs
"""

from sslsep.evaluation.command import extractor_specs


def __getattr__(name):
    if name == "evaluate_encoders":  # imports torch: only when asked for
        from sslsep.evaluation.evaluate import evaluate_encoders

        return evaluate_encoders
    raise AttributeError(name)


__all__ = ["evaluate_encoders", "extractor_specs"]
