"""The diffusion core: the forward process (:mod:`~mi_lib.diffusion.schedule`), counter-based noise
(:mod:`~mi_lib.diffusion.noise`), the denoisers (:mod:`~mi_lib.diffusion.nets`, :mod:`~mi_lib.diffusion.unet`,
:mod:`~mi_lib.diffusion.exact`), training (:mod:`~mi_lib.diffusion.train`), sampling with Hal
(:mod:`~mi_lib.diffusion.sampling`, with its fast paths :mod:`~mi_lib.diffusion.fast` and
:mod:`~mi_lib.diffusion.fused`), and the one fit-or-load path of every trained model
(:mod:`~mi_lib.diffusion.models`)."""
