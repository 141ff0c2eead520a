"""Measurements: hallucination labels from geometry, gaps, segments and intervals (:mod:`~mi_lib.measure.metrics`),
and Hal from the sampler's records and AUROC (:mod:`~mi_lib.measure.detection`)."""
