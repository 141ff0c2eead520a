"""Storage: the on-disk cache of trained models and samples, keyed by their config and the code that computes them
(:mod:`~mi_lib.storage.cache`), the shipped checkpoints (:mod:`~mi_lib.storage.checkpoints`), and the chapters'
results files (:mod:`~mi_lib.storage.results`)."""
