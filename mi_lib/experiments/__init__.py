"""One module per chapter: the chapter's experiment code, its ``SCALES`` and its analysis, one hop from the
notebook that calls it (``chapters/08_mitigations.ipynb`` -> :mod:`mi_lib.experiments.mitigations`).

Imported on demand (``from mi_lib.experiments import mitigations``); the diffusion core does not import it.
"""
