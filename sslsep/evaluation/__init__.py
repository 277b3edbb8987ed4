"""Shallow evaluation of frozen embeddings: extractors, classifiers, metrics, protocols, table."""

from sslsep.evaluation.evaluate import evaluate_encoders, extractor_specs

__all__ = ["evaluate_encoders", "extractor_specs"]
