"""One module per chapter: the chapter's experiment code, its ``SCALES`` and its analysis, one hop from the
notebook that calls it:

- ``chapters/01_forward_process.ipynb`` -> :mod:`mi_lib.experiments.forward_process`
- ``chapters/02_mode_interpolation_1d.ipynb`` -> :mod:`mi_lib.experiments.mode_interpolation_1d`
- ``chapters/03_mode_interpolation_2d.ipynb`` -> :mod:`mi_lib.experiments.mode_interpolation_2d`
- ``chapters/04_score_smoothness.ipynb`` -> :mod:`mi_lib.experiments.score_smoothness`
- ``chapters/05_shapes_hands.ipynb`` -> :mod:`mi_lib.experiments.shapes_hands`
- ``chapters/06_detection.ipynb`` -> :mod:`mi_lib.experiments.detection`
- ``chapters/07_recursive_training.ipynb`` -> :mod:`mi_lib.experiments.recursive_training`
- ``chapters/07b_recursive_digits.ipynb`` -> :mod:`mi_lib.experiments.recursive_digits`
- ``chapters/07c_recursive_shapes.ipynb`` -> :mod:`mi_lib.experiments.recursive_shapes`
- ``chapters/08_mitigations.ipynb`` -> :mod:`mi_lib.experiments.mitigations`

and :mod:`mi_lib.experiments.recursion`, the recursive-training loop of chapter 7's three sections (its public names
are re-exported by ``mi_lib``: ``mi.recursive_training``). A chapter's module is imported on demand (``from
mi_lib.experiments import mitigations``); nothing below ``experiments/`` imports from it.
"""
