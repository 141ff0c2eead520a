"""Data sets: Gaussian mixtures with closed-form noised scores (:mod:`~mi_lib.datasets.mixtures`), Simple Shapes and
synthetic hands with their rule-based counters (:mod:`~mi_lib.datasets.shapes`, :mod:`~mi_lib.datasets.hands`), and
real digits (:mod:`~mi_lib.datasets.digits`)."""
