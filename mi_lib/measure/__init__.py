"""Measurements: hallucination labels from geometry, gaps, segments and intervals (:mod:`~mi_lib.measure.metrics`),
and scoring samples and judging the scores (:mod:`~mi_lib.measure.detection`)."""
