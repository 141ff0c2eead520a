"""Chapter 8, *Can we stop it?*: samplers and mitigations side by side on the same models, seeds and labels.

Three families of remedy, each scored by :func:`scoreboard` with the same measurements (:func:`measure`):

- **samplers**: DDPM (ancestral) against DDIM at several step counts, DDIM with stochasticity ``eta`` at every
  step, and DDIM with ``eta`` only in its last few steps (Ashiq et al. 2026: after a critical time the
  deterministic ODE can stay between the two nearest modes; a few stochastic steps let samples escape);
- **sampling-time sharpening** (Chandran, Anumasa & Liu 2025): the score Y replaced by R = Y - alpha Y'', with
  the Laplacian Y'' estimated by finite differences along random sign vectors (Hutchinson's trace estimator),
  :class:`SharpenedDenoiser`; :func:`laplacian_check` holds the estimate against the exact score's Laplacian;
- **training-time**: Variance-guided Score Modulation (VSM; Bhosale et al. 2026), ported from its official
  code to the MLP: a learned-variance head trained with Improved DDPM's hybrid loss plus
  rho / sqrt(1 - alpha_bar_t) * mean(1 / (1 + J^2)), J = -1 / sigma_theta^2 (:func:`mi_lib.diffusion.train.loss_terms`),
  swept over rho (rho = 0 is the learned-variance baseline), sampled with the learned variance;
  :func:`vsm_terms` shows what the penalty weighs against the rest of the loss. Beside it the baselines a
  reader would try first: more training data, four times the training steps, the untied network (three times
  the parameters), and the paper-scale models a GPU trained.

Labels come from geometry alone (:func:`mi_lib.out_of_support`: farther than k sigma from every mode), never from
Hal, so Hal's AUROC under each sampler is an honest question. In-support quality is scored beside the rate
(total variation of the mode masses, the modes' spread against the true sigma), so that no method can win by
collapsing or narrowing modes.

Our reading of the sharpening paper, whose toy-scale code is not public: R = Y - alpha Y'' is applied to the
network's eps (the score times -sqrt(1 - alpha_bar_t), the same correction at each t) at every reverse step;
``alpha = strength * d**2`` and the finite-difference step ``delta = delta_rel * d`` are in units of the data's
nearest-mode spacing d, so one strength means the same on the 1D mixture and the 2D grid.
"""

from __future__ import annotations

import hashlib
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from torch import Tensor

from .. import plotting
from ..datasets.mixtures import GaussianMixture
from ..diffusion.models import MixtureModelSpec, mixture_model
from ..diffusion.nets import MLPConfig, shared_timestep
from ..diffusion.sampling import model_device, sample, timesteps
from ..diffusion.schedule import OFFICIAL, NoiseSchedule
from ..diffusion.train import TrainConfig, loss_terms
from ..measure import detection
from ..measure.metrics import DEFAULT_K, mixture_report, out_of_support, wilson_interval
from ..params import choice_parameter, number_parameter, positive_int, sequence_parameter
from ..runtime import progress_bar
from ..settings import Settings
from ..storage.cache import cached
from ..storage.results import say

__all__ = [
    "Method", "Scale", "SCALES", "SharpenedDenoiser", "fd_laplacian", "exact_eps_laplacian", "laplacian_check",
    "mode_spacing", "methods", "vsm_spec", "vsm_terms", "measure", "run_method", "scoreboard", "Setup", "setup",
    "print_laplacian_check", "by_method", "print_board", "plot_method", "plot_grid_samples", "plot_board",
    "VSM_DRAWS", "print_vsm_terms", "vsm_rows", "plot_vsm", "full_ddim_name", "vsm_weights", "claimed_numbers",
]

#: The modules behind a run's cache key (:func:`run_method`): the model's fit-or-load path, which imports the trainer,
#: the networks and the sampler, and the measurements.
CODE = ("diffusion/models.py", "measure/metrics.py", "measure/detection.py")

Denoiser = Callable[[Tensor, Tensor], Tensor]
FAMILIES = ("sampler", "sharpening", "training")


# ------------------------------------------------------------------------------------------- sharpening
def mode_spacing(mixture: GaussianMixture) -> float:
    """The smallest distance between two modes: the unit of the sharpening strength and step."""
    d = torch.cdist(mixture.means, mixture.means)
    return float(d[~torch.eye(mixture.n_modes, dtype=torch.bool)].min())


def fd_laplacian(f: Denoiser, x: Tensor, t: Tensor, *, delta: float, probes: int, generator: torch.Generator,
                 f_x: Tensor | None = None) -> Tensor:
    """The Laplacian in x of each output component of ``f(x, t)``, estimated as the mean over ``probes``
    random sign vectors v of (f(x + delta v) - 2 f(x) + f(x - delta v)) / delta**2, whose expectation is
    v^T H v -> trace H (Hutchinson) up to an O(delta**2) finite-difference error. In one dimension v = +-1
    and the estimate is the plain second difference. The 2 * probes evaluations run as one batch.
    ``f_x`` may pass f(x, t) when the caller has it. x: (B, ...) -> (B, ...)."""
    if f_x is None:
        f_x = f(x, t)
    signs = torch.randint(0, 2, (probes, *x.shape), generator=generator).to(x.device, x.dtype) * 2 - 1
    shifted = torch.cat([x + delta * signs, x - delta * signs]).flatten(0, 1)  # (2 * probes * B, ...)
    out = f(shifted, t.repeat(2 * probes)).view(2, probes, *x.shape)
    return ((out[0] + out[1] - 2 * f_x) / delta**2).mean(0)


class SharpenedDenoiser:
    """``model``'s eps with the score sharpened, R = Y - alpha Y'' (Chandran et al. 2025), Y'' estimated by
    :func:`fd_laplacian` with sign vectors drawn from (``seed``, t); a :func:`mi_lib.sample` denoiser.

    With ``t_max`` set, steps at larger t are left alone (where q_t is pure noise the exact score is linear and
    its Laplacian ~0; this saves the 2 * probes extra evaluations there). The probes drawn at a step depend on
    the batch, so samples depend on the chunk they are drawn in: sample with one chunk (``chunk_size=None``)
    to reproduce a run. ``alpha = 0`` returns ``model``'s eps unchanged."""

    def __init__(self, model: Denoiser, alpha: float, *, delta: float, probes: int = 1, seed: int = 0,
                 t_max: int | None = None):
        self.model, self.probes, self.seed, self.t_max = model, positive_int(probes, "probes"), seed, t_max
        self.alpha, self.delta = number_parameter(alpha, "alpha", at_least=0), number_parameter(delta, "delta", above=0)
        self.sample_shape = getattr(model, "sample_shape", None)
        self.device = model_device(model)

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        eps = self.model(x, t)
        if self.alpha == 0.0 or (self.t_max is not None and int(t[0]) > self.t_max):
            return eps
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(t[0]))
        lap = fd_laplacian(self.model, x, t, delta=self.delta, probes=self.probes, generator=generator, f_x=eps)
        return eps - self.alpha * lap


def exact_eps_laplacian(mixture: GaussianMixture, schedule: NoiseSchedule, x: Tensor, t: int) -> Tensor:
    """The exact Laplacian in x of the ideal eps, -sqrt(1 - alpha_bar_t) * grad log q_t(x), by automatic
    differentiation of the closed-form score in float64. x: (B, D) -> (B, D)."""
    q = mixture.noised(float(schedule.alpha_bar_64[t]))
    x = x.detach().to(torch.float64).requires_grad_(True)
    score = q.score(x)
    lap = torch.zeros_like(x)
    for i in range(x.shape[1]):
        grad_i = torch.autograd.grad(score[:, i].sum(), x, create_graph=True)[0]
        for j in range(x.shape[1]):
            lap[:, i] += torch.autograd.grad(grad_i[:, j].sum(), x, retain_graph=True)[0][:, j]
    return -math.sqrt(1.0 - float(schedule.alpha_bar_64[t])) * lap.detach()


def laplacian_check(mixture: GaussianMixture, schedule: NoiseSchedule, ts: Sequence[int], *, n: int = 2_000,
                    probes: Sequence[int] = (1, 4, 16), delta_rel: float = 0.02, seed: int = 0) -> list[dict[str, Any]]:
    """The sampler's finite-difference Laplacian of the *exact* eps (:class:`mi_lib.ExactDenoiser`) against its
    exact value (:func:`exact_eps_laplacian`), at ``n`` points spread uniformly over the box that holds q_t's
    modes (where hallucinations live: on the modes the score is nearly linear and its Laplacian nearly 0), for
    each t in ``ts``: one row per (t, probes) with the relative error ||estimate - exact|| / ||exact|| over the
    points, in float64, and the Laplacian's root mean square."""
    from ..diffusion.exact import ExactDenoiser  # noqa: PLC0415  (only the check needs it)

    exact_model = ExactDenoiser(mixture, schedule)
    delta = delta_rel * mode_spacing(mixture)
    rows = []
    for t in ts:
        q = mixture.noised(float(schedule.alpha_bar_64[t]))
        lo, hi = q.means.min(0).values - 3 * q.sigma.max(), q.means.max(0).values + 3 * q.sigma.max()
        x = lo + (hi - lo) * torch.rand(n, mixture.dim, generator=torch.Generator().manual_seed(seed + t), dtype=torch.float64)
        tt = shared_timestep(t, n, "cpu")
        truth = exact_eps_laplacian(mixture, schedule, x, t)
        for m in probes:
            est = fd_laplacian(exact_model, x, tt, delta=delta, probes=m, generator=torch.Generator().manual_seed(seed))
            rows.append({"t": t, "probes": m, "rel_error": float((est - truth).norm() / truth.norm()),
                         "exact_rms": float(truth.square().mean().sqrt())})
    return rows


# ------------------------------------------------------------------------------------------- methods
#: DDIM starts at the last timestep whose alpha_bar is at least this (the data's share of x_t, sqrt(alpha_bar), is
#: about 0.003 there: x_t is pure noise as far as the sampler can tell):
#: the official schedule's alpha_bar falls to 1.3e-47 at t = 999, where DDIM's deterministic step would
#: multiply the network's error in eps by up to ~1e20 (see :mod:`mi_lib.diffusion.sampling`). DDPM runs all 1000 steps.
DDIM_START_ALPHA_BAR = 1e-5


def ddim_start(schedule: NoiseSchedule) -> int:
    """The timestep DDIM starts from under ``schedule`` (:data:`DDIM_START_ALPHA_BAR`)."""
    return int((schedule.alpha_bar_64 >= DDIM_START_ALPHA_BAR).nonzero().max())


@dataclass(frozen=True)
class Method:
    """One way of sampling a mixture model: which model (``spec``), which sampler (``sampler``, ``variance``,
    ``steps``, ``eta``, ``eta_steps``: see :func:`mi_lib.sample`) and how much sharpening (``strength``, in units of the
    squared mode spacing; 0: none). ``name`` is what the scoreboard prints, ``family`` one of
    ``"sampler"``, ``"sharpening"``, ``"training"``."""

    name: str
    family: str
    spec: MixtureModelSpec
    sampler: str = "ddpm"
    steps: int | None = None
    eta: float = 0.0
    eta_steps: int | None = None
    strength: float = 0.0
    probes: int = 1
    delta_rel: float = 0.02
    variance: str = "large"

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if self.variance == "learned" and not self.spec.model.learn_sigma:
            raise ValueError(f"{self.name}: variance='learned' needs a learned-variance model (MLPConfig(learn_sigma=True))")
        self.visited()  # raises on a bad sampler or step count

    def start(self) -> int | None:
        """The timestep DDIM starts from (:func:`ddim_start`); None for DDPM (all T steps)."""
        return ddim_start(NoiseSchedule(self.spec.schedule)) if self.sampler == "ddim" else None

    def visited(self) -> list[int]:
        """The timesteps this method's sampler visits, in order."""
        return timesteps(NoiseSchedule(self.spec.schedule).T, self.sampler, self.steps, self.start())

    def nfe(self) -> int:
        """Network evaluations per sample."""
        sharpened = sum(t <= self.sharpen_until() for t in self.visited()) if self.strength > 0 else 0
        return len(self.visited()) + 2 * self.probes * sharpened

    def sharpen_until(self) -> int:
        """The largest timestep sharpening acts at: :func:`ddim_start`, where q_t stops being pure noise."""
        return ddim_start(NoiseSchedule(self.spec.schedule))

    def hal_window(self) -> tuple[int, int]:
        """Hal over the last 10 steps this sampler takes (the paper's window, (0, 9), for DDPM)."""
        ts = self.visited()
        return 0, ts[-min(10, len(ts))]


@dataclass(frozen=True)
class Scale:
    """What a scale runs: ``n_samples`` per method and data set; the base model of each data set (``specs``);
    the training-time baselines (``training``: name -> spec, on the 1D mixture); DDIM's step counts
    (``ddim_steps``; None: every step from :func:`ddim_start`); the stochastic variants at ``stochastic_steps`` steps (``etas`` at every step,
    ``last_steps``: eta = 1 only in that many last steps); the sharpening ``strengths`` with ``probes`` sign
    vectors per step; VSM's weights ``vsm_rhos`` (on the 1D base model, :func:`vsm_spec`) and the rho = 0 recipe
    again from the training seeds ``vsm_null_seeds`` (how far apart equal recipes land); ``families``: which
    families run on which data set."""

    n_samples: dict[str, int]
    specs: dict[str, MixtureModelSpec]
    training: dict[str, MixtureModelSpec]
    families: dict[str, tuple[str, ...]]
    ddim_steps: tuple[int | None, ...] = (25, 100, None)
    stochastic_steps: int = 100
    etas: tuple[float, ...] = (0.5, 1.0)
    last_steps: tuple[int, ...] = (5, 20)
    strengths: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    probes: int = 1
    vsm_rhos: tuple[float, ...] = (0.0, 0.1, 1.0, 10.0)
    vsm_null_seeds: tuple[int, ...] = (1235,)


_CI_1D = MixtureModelSpec("1d", (1.0, 2.0, 3.0), n_train=20_000, train=TrainConfig(steps=5_000, batch_size=2_000))
_CI_GRID = MixtureModelSpec("grid", n_train=20_000, model=MLPConfig(data_dim=2), train=TrainConfig(steps=30_000, batch_size=2_000))
_PAPER_TRAIN = TrainConfig(steps=20_000, batch_size=10_000)
_PAPER_1D = MixtureModelSpec("1d", (1.0, 2.0, 3.0), n_train=500_000, train=_PAPER_TRAIN)
_PAPER_GRID = MixtureModelSpec("grid", n_train=100_000, model=MLPConfig(data_dim=2), train=TrainConfig(steps=100_000))

#: The chapter's two scales. CI: the shipped CPU-trained models (data/checkpoints; "paper-trained" is chapter 2's
#: N = 500k model, 20,000 steps at batch 10,000 on a GPU; the VSM models), a few thousand samples per method, two
#: sharpening strengths and three VSM weights, so that the chapter stays within its three minutes of the test command
#: (rho = 1 is shipped too: pass vsm_rhos=[0, 0.1, 1, 10]).
#: Paper: the paper's models (chapter 2's N = 500k model, chapter 3's grid, which GPU window 1 trains) and 100,000
#: samples per method; what it trains itself (the untied network, twice the steps, three VSM models: ~8 minutes on
#: an H100) fits GPU window 7.
SCALES: dict[str, Scale] = {
    "ci": Scale(
        n_samples={"1d": 4_096, "grid": 2_048},
        specs={"1d": _CI_1D, "grid": _CI_GRID},
        training={
            "2,000 training points": replace(_CI_1D, n_train=2_000),
            "4x the training steps": replace(_CI_1D, train=TrainConfig(steps=20_000, batch_size=2_000)),
            "untied network (3x parameters)": replace(_CI_1D, model=MLPConfig(tied_blocks=False)),
            "paper-trained, 500,000 points": _PAPER_1D,
        },
        families={"grid": ("sampler", "sharpening"), "1d": ("sampler", "training")},
        strengths=(3e-3, 1e-2),
        vsm_rhos=(0.0, 0.1, 10.0),
    ),
    "paper": Scale(
        n_samples={"1d": 100_000, "grid": 100_000},
        specs={"1d": _PAPER_1D, "grid": _PAPER_GRID},
        training={
            "25,000 training points": replace(_PAPER_1D, n_train=25_000),
            "untied network (3x parameters)": replace(_PAPER_1D, model=MLPConfig(tied_blocks=False)),
            "2x the training steps": replace(_PAPER_1D, train=TrainConfig(steps=40_000, batch_size=10_000)),
        },
        families={"grid": ("sampler", "sharpening"), "1d": FAMILIES},
        strengths=(1e-3, 3e-3, 1e-2, 3e-2),
        probes=4,
        vsm_rhos=(0.0, 0.1, 1.0),
    ),
}


def methods(scale: Scale, dataset: str) -> list[Method]:
    """Every method of ``scale`` on ``dataset`` ("1d" or "grid"), DDPM on the base model first."""
    if dataset not in scale.specs:
        raise ValueError(f"dataset must be one of {sorted(scale.specs)}, got {dataset!r}")
    base, s, families = scale.specs[dataset], scale.stochastic_steps, scale.families.get(dataset, ())
    out = [Method("DDPM, 1000 steps", "sampler", base)]
    if "sampler" in families:
        out.append(Method("DDPM, sigma^2 = beta tilde", "sampler", base, variance="small"))
        ddim = [Method("DDIM eta=0", "sampler", base, "ddim", n) for n in scale.ddim_steps]
        out += [replace(m, name=f"DDIM eta=0, {len(m.visited())} steps") for m in ddim]
        out += [Method(f"DDIM eta={eta:g}, {s} steps", "sampler", base, "ddim", s, eta) for eta in scale.etas]
        out += [Method(f"DDIM, eta=1 in the last {k} of {s} steps", "sampler", base, "ddim", s, 1.0, k)
                for k in scale.last_steps]
    if "sharpening" in families:
        out += [Method(f"DDPM + sharpening {a:g}", "sharpening", base, strength=a, probes=scale.probes)
                for a in scale.strengths]
    if "training" in families:
        out += [Method(f"DDPM, {name}", "training", spec) for name, spec in scale.training.items()]
        out += [Method(f"DDPM, learned variance, VSM rho={rho:g}", "training", vsm_spec(base, rho), variance="learned")
                for rho in scale.vsm_rhos]
        out += [Method(f"DDPM, learned variance, VSM rho=0 (seed {s})", "training",
                       replace(vsm_spec(base, 0.0), train=replace(base.train, seed=s)), variance="learned")
                for s in scale.vsm_null_seeds]
        if 0.1 in scale.vsm_rhos:  # VSM's recommended weight, its mean alone: the same network with sigma^2 = beta
            out.append(Method("DDPM, VSM rho=0.1 network, sigma^2 = beta", "training", vsm_spec(base, 0.1)))
    return out


def vsm_spec(base: MixtureModelSpec, rho: float) -> MixtureModelSpec:
    """``base`` with a learned-variance head, trained with VSM's penalty at weight ``rho`` (0: Improved DDPM's
    hybrid loss alone)."""
    return replace(base, model=replace(base.model, learn_sigma=True), train=replace(base.train, rho=float(rho)))


VSM_DRAWS = 20_000  # the training draws (x_0, t, eps) :func:`vsm_terms` averages over


@torch.no_grad()
def vsm_terms(scale: Scale, *, seed: int = 0, settings: Settings = Settings()) -> list[dict[str, Any]]:
    """What VSM's penalty weighs in each model of the rho sweep: the loss terms of :func:`mi_lib.diffusion.train.loss_terms`
    averaged over ``VSM_DRAWS`` training draws (x_0 from the training set, t uniform, eps normal; ``seed``): ``mse``, ``vb``
    and ``penalty`` = mean(rho / sqrt(1 - alpha_bar_t) * smooth), its share of the loss, and where the learned
    variance sits between beta tilde (0) and beta (1) at t < 50 and over all t (``frac_low_t``, ``frac``)."""
    base, device = scale.specs["1d"], settings.device
    schedule = NoiseSchedule(base.schedule).to(device)
    g = torch.Generator().manual_seed(seed)
    data = base.training_data()
    x0 = data[torch.randint(0, len(data), (VSM_DRAWS,), generator=g)].to(device)
    t = torch.randint(0, schedule.T, (VSM_DRAWS,), generator=g).to(device)
    eps = torch.randn(x0.shape, generator=g).to(device)
    rows = []
    for rho in scale.vsm_rhos:
        model = mixture_model(vsm_spec(base, rho), settings).model
        terms = loss_terms(model, schedule, x0, t, eps, rho)
        v = model(schedule.q_sample(x0, t, eps), t).chunk(2, dim=1)[1].squeeze(1)
        frac = ((v + 1) / 2).cpu()
        penalty = rho / schedule.sqrt_one_minus_alpha_bar[t] * terms["smooth"]
        rows.append({"rho": rho, "mse": float(terms["mse"].mean()), "vb": float(terms["vb"].mean()),
                     "penalty": float(penalty.mean()), "penalty_share": float(penalty.mean() / terms["loss"].mean()),
                     "frac_low_t": float(frac[t.cpu() < 50].mean()), "frac": float(frac.mean())})
    return rows


# ------------------------------------------------------------------------------------------- measuring
def measure(x0: Tensor, hal: Tensor, mixture: GaussianMixture, k: float = DEFAULT_K) -> dict[str, Any]:
    """The scoreboard's columns for samples ``x0`` (N, D) with Hal scores ``hal`` (N,): the hallucination
    count, rate and Wilson 95% interval; the in-support quality (``mode_tv``: total variation of the mode
    masses from the true weights; ``mode_spread``: the in-support samples' RMS distance to their mode per
    dimension in sigma, just under 1 for true data); ``tv``, the total variation over the modes' balls and the
    rest; and Hal's AUROC for the labels (NaN when one class is empty)."""
    labels = out_of_support(x0, mixture, k)
    n, n_out = int(x0.shape[0]), int(labels.sum())
    lo, hi = wilson_interval(n_out, n)
    report = mixture_report(x0, mixture, k)
    auroc = detection.auroc(hal.double(), labels) if 0 < n_out < n else float("nan")
    return {"n": n, "hallucinated": n_out, "rate": n_out / n, "rate_lo": lo, "rate_hi": hi,
            "mode_tv": report["mode_tv"], "mode_spread": report["mode_spread"], "tv": report["tv"], "hal_auroc": auroc}


def _run_source() -> str:
    """A hash of the code that computes a run -- not of this module's setup, tables and figures: in every
    cache key of :func:`run_method`, so editing a figure reruns nothing and editing the sampling code reruns."""
    code = [inspect.getsource(obj) for obj in (mode_spacing, fd_laplacian, SharpenedDenoiser, ddim_start, Method,
                                               measure, run_method)]
    return hashlib.sha256("".join([*code, repr(DDIM_START_ALPHA_BAR)]).encode()).hexdigest()[:16]


def run_method(method: Method, n: int, *, seed: int = 0, settings: Settings = Settings(), k: float = DEFAULT_K) -> dict[str, Any]:
    """Sample ``n`` points with ``method`` (one chunk, ``seed``) and :func:`measure` them; cached on disk
    (the key holds the method, the model's origin, the source of the code here that runs it and of
    the model's fit-or-load path, metrics and detection with all they import: trainer, networks, sampler)."""
    trained = mixture_model(method.spec, settings)
    config = {"method": method, "origin": trained.origin, "n": n, "seed": seed, "k": k,
              "device": settings.device.type, "module": _run_source()}

    def compute() -> dict[str, Any]:
        model: Denoiser = trained.model
        if method.strength > 0:
            d = mode_spacing(method.spec.mixture())
            model = SharpenedDenoiser(trained.model, method.strength * d**2, delta=method.delta_rel * d,
                                      probes=method.probes, seed=seed, t_max=method.sharpen_until())
        result = sample(model, NoiseSchedule(method.spec.schedule), n, shape=(method.spec.mixture().dim,),
                        sampler=method.sampler, variance=method.variance, steps=method.steps, start=method.start(), eta=method.eta,
                        eta_steps=method.eta_steps,
                        seed=seed, hal_window=method.hal_window(), progress=False)
        return {"x0": result.x0, **measure(result.x0, result.hal, method.spec.mixture(), k)}

    return cached("mitigation-run", config, compute, root=settings.cache_dir, code=CODE)


def scoreboard(scale: Scale, datasets: Sequence[str] = ("grid", "1d"), *, seed: int = 0,
               settings: Settings = Settings(), k: float = DEFAULT_K) -> list[dict[str, Any]]:
    """One row per (data set, method) of ``scale``: the method's settings, its network evaluations per sample
    and :func:`measure`'s columns, all on the same ``seed`` (so every method starts from the same x_T)."""
    jobs = [(ds, m) for ds in datasets for m in methods(scale, ds)]
    rows = []
    with progress_bar(total=sum(m.nfe() for _, m in jobs), desc="scoreboard", disable=not settings.progress) as bar:
        for dataset, method in jobs:
            run = run_method(method, scale.n_samples[dataset], seed=seed, settings=settings, k=k)
            rows.append({"dataset": dataset, "method": method.name, "family": method.family, "nfe": method.nfe(),
                         **{c: v for c, v in run.items() if c != "x0"}, "x0": run["x0"]})
            bar.update(method.nfe())
    return rows


# ------------------------------------------------------------------------------------------- the chapter
@dataclass(frozen=True)
class Setup:
    """The chapter's parameters, checked; ``config`` is the scale with the reader's overrides."""

    scale: str
    seed: int
    k: float
    n_samples: int | None  # per method on each data set; None: from scale
    strengths: tuple[float, ...] | None  # None: from scale
    vsm_rhos: tuple[float, ...] | None  # None: from scale

    @property
    def config(self) -> Scale:
        config = SCALES[self.scale]
        if self.n_samples is not None:
            config = replace(config, n_samples={name: self.n_samples for name in config.n_samples})
        if self.strengths is not None:
            config = replace(config, strengths=self.strengths)
        if self.vsm_rhos is not None:
            config = replace(config, vsm_rhos=self.vsm_rhos)
        return config


def setup(scale: str, seed: int, k: float, n_samples: int | None, strengths: Sequence[float] | str | None,
          vsm_rhos: Sequence[float] | str | None) -> Setup:
    """Check the notebook's parameters (lists as papermill passes them), or one clear error naming the parameter,
    before any work."""
    scale = choice_parameter(scale, "scale", tuple(SCALES))
    seed = number_parameter(seed, "seed", int, at_least=0, at_most=2**32 - 1)
    k = number_parameter(k, "k", above=0)
    if n_samples is not None:
        n_samples = number_parameter(n_samples, "n_samples", int, at_least=100)
    if strengths is not None:
        strengths = sequence_parameter(strengths, "strengths", float)
        if not strengths or not all(0 < a <= 1 for a in strengths):
            raise ValueError(f"strengths must be a non-empty list of numbers in (0, 1], got {strengths!r}")
    if vsm_rhos is not None:
        vsm_rhos = sequence_parameter(vsm_rhos, "vsm_rhos", float)
        if not vsm_rhos or not all(0 <= r < 1e6 for r in vsm_rhos):
            raise ValueError(f"vsm_rhos must be a non-empty list of numbers >= 0, got {vsm_rhos!r}")
    return Setup(scale, seed, k, n_samples, strengths, vsm_rhos)


def print_laplacian_check(check: dict[str, list[dict[str, Any]]]) -> None:
    """:func:`laplacian_check`'s rows per mixture (probes 1 and 16), one line per t."""
    print("finite-difference Laplacian of the exact eps against autograd's")
    print(f"{'mixture':<8} {'t':>4} | {'relative error':^19} | {'Laplacian':>9}")
    print(f"{'':<8} {'':>4} | {'1 vector':>9} {'16':>9} | {'RMS':>9}")
    for name, rows in check.items():
        for one, many in zip(rows[::2], rows[1::2]):
            print(f"{name:<8} {one['t']:4d} | {one['rel_error']:9.1e} {many['rel_error']:9.1e} | "
                  f"{one['exact_rms']:9.1e}")


def by_method(board: Sequence[dict[str, Any]], dataset: str) -> dict[str, dict[str, Any]]:
    """The scoreboard's rows on ``dataset``, by method name."""
    return {r["method"]: r for r in board if r["dataset"] == dataset}


def print_board(board: Sequence[dict[str, Any]], s: Setup) -> None:
    """The scoreboard, one table per data set."""
    say(f"seed {s.seed}; DDIM starts at t = {ddim_start(NoiseSchedule(OFFICIAL))}; "
        f"hallucination = farther than {s.k:g} sigma from every mode")
    for dataset in dict.fromkeys(r["dataset"] for r in board):
        rows = [r for r in board if r["dataset"] == dataset]
        print(f"\n{dataset}: {rows[0]['n']:,} samples per method")
        print(f"{'method':<39}{'NFE':>5} | {'hallucinated':<18} | mode TV spread AUROC")
        for r in rows:
            interval = f"({100 * r['rate_lo']:.1f}-{100 * r['rate_hi']:.1f})"
            name = r["method"].removeprefix("DDPM, ") if r["family"] == "training" else r["method"]
            print(f"{name:<39}{r['nfe']:5d} | {r['rate']:6.2%} {interval:<11} | "
                  f"{r['mode_tv']:7.3f} {r['mode_spread']:6.2f} {r['hal_auroc']:5.2f}")
        by_name = by_method(board, dataset)
        full = by_name.get(full_ddim_name())
        if full is not None and "DDPM, 1000 steps" in by_name:
            ddpm = by_name["DDPM, 1000 steps"]["hal_auroc"]
            say(f"Hal's AUROC under DDIM run to every step: {full['hal_auroc']:.2f}, under DDPM {ddpm:.2f} "
                f"({'higher' if full['hal_auroc'] > ddpm else 'not higher'} under DDIM)")


def plot_method(ax: Axes, row: Mapping[str, Any], s: Setup, title: str | None = None) -> None:
    """One method's samples: on the grid a scatter with the out-of-support ones in red, in 1D a histogram (log
    density) against the true density, the band of each mode's k sigma shaded."""
    mixture = s.config.specs[row["dataset"]].mixture()
    title = title or f"{row['dataset']}: {row['method']}\n{row['rate']:.1%} out of support"
    x = row["x0"]
    if mixture.dim == 2:
        out = out_of_support(x, mixture, s.k)
        plotting.scatter_vs_modes(ax, x[~out], mixture, lim=1.75, title=title)
        ax.scatter(x[out, 0].numpy(), x[out, 1].numpy(), s=1.5, c="red", linewidths=0)
        return
    means, sigma = mixture.means[:, 0].tolist(), float(mixture.sigma.max())
    lo, hi, bins = min(means) - 0.5, max(means) + 0.5, 300
    plotting.hist_vs_density(ax, x, mixture, bins=bins, x_range=(lo, hi), log=True, title=title)
    ax.set_ylim(bottom=0.5 * bins / (len(x) * (hi - lo)))  # half of one sample in a bin: the floor a count shows
    for m in means:
        ax.axvspan(m - s.k * sigma, m + s.k * sigma, color="grey", alpha=0.12, lw=0)


def plot_grid_samples(axes: Any, board: Sequence[dict[str, Any]], s: Setup) -> None:
    """The grid's samples under the first four samplers, the last-5-steps noise and one sharpening strength, the
    out-of-support ones in red."""
    grid_board = [r for r in board if r["dataset"] == "grid"]
    show = [r for r in grid_board if r["family"] == "sampler"][:4]
    show += [r for r in grid_board if "last 5" in r["method"]]
    sharpened = [r for r in grid_board if r["family"] == "sharpening"]
    show += sharpened[(len(sharpened) - 1) // 2:][:1]  # a middling strength
    for ax in axes.flat[len(show):]:
        ax.axis("off")
    for ax, r in zip(axes.flat, show):
        plot_method(ax, r, s, title=f"{r['method']}\n{r['rate']:.1%} out of support (red)")


def plot_board(axes: Sequence[Axes], board: Sequence[dict[str, Any]]) -> None:
    """Per data set, every method's rate (with its interval) against its mode TV, shaded by family and numbered as
    in the legend."""
    colormaps = {"sampler": plt.cm.Blues, "sharpening": plt.cm.Oranges, "training": plt.cm.Greens}
    markers = "osD^v<>ph*"
    for ax, dataset in zip(axes, dict.fromkeys(r["dataset"] for r in board)):
        rows = [r for r in board if r["dataset"] == dataset]
        for i, r in enumerate(rows):
            same = [q for q in rows if q["family"] == r["family"]]
            shade = colormaps[r["family"]](0.45 + 0.5 * same.index(r) / max(1, len(same) - 1))
            xerr = [[100 * (r["rate"] - r["rate_lo"])], [100 * (r["rate_hi"] - r["rate"])]]
            ax.errorbar(100 * r["rate"], r["mode_tv"], xerr=xerr, fmt=markers[i % len(markers)],
                        color=shade, ms=6, capsize=2, label=f"{i + 1}. {r['method']} ({r['family']})")
            ax.annotate(str(i + 1), (100 * r["rate"], r["mode_tv"]), xytext=(3, 3), textcoords="offset points", fontsize=8)
        ax.set(xlabel="hallucinated (%), 95% Wilson interval",
               ylabel="mode TV (0 = as the truth)", title=f"{dataset}: every method, one seed")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def print_vsm_terms(terms: Sequence[dict[str, Any]]) -> None:
    """:func:`vsm_terms` as a table."""
    print(f"loss terms over {VSM_DRAWS:,} training draws (x_0, t, eps) of the 1D model")
    print(f"{'rho':>5} | {'MSE':>7} {'VB':>8} {'penalty':>8} {'share':>6} | "
          f"{'variance at t < 50':>18} {'all t':>6}")
    for r in terms:
        print(f"{r['rho']:5g} | {r['mse']:7.4f} {r['vb']:8.4f} {r['penalty']:8.4f} "
              f"{r['penalty_share']:6.1%} | {r['frac_low_t']:18.2f} {r['frac']:6.2f}")


def vsm_rows(board: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The 1D rows that bear on VSM: its weights, plain DDPM and the small fixed variance."""
    return [r for r in board if r["dataset"] == "1d"
            and ("VSM" in r["method"] or r["method"].startswith("DDPM, 1000") or "beta tilde" in r["method"])]


def plot_vsm(ax: Axes, rows: Sequence[dict[str, Any]]) -> None:
    for i, r in enumerate(rows):
        ax.errorbar(100 * r["rate"], i, fmt="o", color="C2" if "VSM" in r["method"] else "C0",
                    xerr=[[100 * (r["rate"] - r["rate_lo"])], [100 * (r["rate_hi"] - r["rate"])]], capsize=3)
    ax.set_yticks(range(len(rows)), [r["method"] for r in rows])
    ax.invert_yaxis()
    ax.set(xlabel="hallucinated (%), 95% Wilson interval",
           title="1D mixture: a learned-variance network per VSM weight (green)\nbeside the plain network (blue)")


def full_ddim_name() -> str:
    """The name of DDIM run to every step from its start under the official schedule."""
    return f"DDIM eta=0, {ddim_start(NoiseSchedule(OFFICIAL)) + 1} steps"


def claimed_numbers(board: Sequence[dict[str, Any]]) -> dict[str, float]:
    """What ``results/08_mitigations.json`` records: every claim's rates, the grid's Hal AUROCs and mode TV."""
    grid_rows, one_d = by_method(board, "grid"), by_method(board, "1d")
    ddpm, full_name = grid_rows["DDPM, 1000 steps"], full_ddim_name()
    numbers = {
        "grid_ddpm": ddpm["rate"],
        "grid_ddim25": grid_rows["DDIM eta=0, 25 steps"]["rate"],
        "grid_ddim100": grid_rows["DDIM eta=0, 100 steps"]["rate"],
        "grid_ddim_all": grid_rows[full_name]["rate"],
        "grid_ddim100_last5": grid_rows["DDIM, eta=1 in the last 5 of 100 steps"]["rate"],
        "grid_hal_auroc_ddpm": ddpm["hal_auroc"],
        "grid_hal_auroc_ddim_all": grid_rows[full_name]["hal_auroc"],
        "grid_mode_tv_ddpm": ddpm["mode_tv"],
    }
    for r in grid_rows.values():
        if r["family"] == "sharpening":
            numbers[f"grid_sharpening_{r['method'].split()[-1]}"] = r["rate"]
    numbers["grid_ddpm_small_variance"] = grid_rows["DDPM, sigma^2 = beta tilde"]["rate"]
    vsm = vsm_weights(board)
    for key, name in (("1d_base", "DDPM, 1000 steps"),
                      ("1d_small_variance", "DDPM, sigma^2 = beta tilde"),
                      ("1d_ddim25", "DDIM eta=0, 25 steps"),
                      ("1d_ddim_all", full_name),
                      ("1d_ddim100_last5", "DDIM, eta=1 in the last 5 of 100 steps"),
                      ("1d_4x_steps", "DDPM, 4x the training steps"),
                      ("1d_untied", "DDPM, untied network (3x parameters)"),
                      ("1d_2k_points", "DDPM, 2,000 training points"),
                      *((f"1d_vsm_rho{name.split('=')[-1]}", name) for name in vsm)):
        if name in one_d:
            numbers[key] = one_d[name]["rate"]
    for r in one_d.values():
        if "(seed" in r["method"]:  # the rho = 0 recipe again, from other training seeds
            numbers[f"1d_vsm_rho0_seed{r['method'].split()[-1].rstrip(')')}"] = r["rate"]
    return numbers


def vsm_weights(board: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The 1D rows of VSM's weights (the training-seed replicates left out), by method name."""
    return {name: r for name, r in by_method(board, "1d").items()
            if "learned variance, VSM" in name and "(seed" not in name}
