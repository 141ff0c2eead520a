"""One module per chapter: the chapter's experiment code, its ``SCALES`` and its analysis, one hop from the
notebook that calls it:

- ``chapters/06_detection.ipynb`` -> :mod:`mi_lib.experiments.detection`
- ``chapters/07_recursive_training.ipynb`` -> :mod:`mi_lib.experiments.recursive_training`
- ``chapters/08_mitigations.ipynb`` -> :mod:`mi_lib.experiments.mitigations`

Imported on demand (``from mi_lib.experiments import mitigations``); the diffusion core does not import it.
"""
