"""Training: the epsilon-prediction loss and one training loop for any denoiser.

The loss returns per-sample values (the caller reduces); :func:`train` fits a model on an in-memory tensor
that already lives on the training device, with Adam, an optional EMA and an explicit seed, and returns the
model with its loss history. Fast paths (``precision``, ``compile``, ``fused``) are options of :func:`train`,
not of :class:`TrainConfig`, because they change how a model is computed, not which model is meant.

A long training can be resumed: with ``resume=<file>``, :func:`train` writes its whole state there every
``save_every_s`` seconds (weights, optimizer, EMA, random generator, the epoch's data order, losses so far)
and, when the file exists at the start, goes on from it. A resumed run gives bit for bit the model an
uninterrupted one gives (same device and settings). The lent GPU machine runs a command for at most ten
minutes, so a training longer than that finishes over several calls (:func:`mi_lib.storage.cache.partial_path`
names the file next to the cache entry it will become).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from ..params import number_parameter, positive_int
from ..runtime import progress_bar, require_cuda
from ..storage.cache import KEY_OMITS_DEFAULT, load_or_warn, write_atomic
from .fast import FastDenoiser, precision_flags
from .schedule import NoiseSchedule, broadcast_to

__all__ = ["TrainConfig", "TrainResult", "StaleTrainingState", "NonFiniteLoss", "diffusion_loss", "loss_terms", "train", "train_many", "data_fingerprint", "weights_fingerprint"]


class NonFiniteLoss(RuntimeError):
    """A training's loss became NaN or infinite: it stops there, and nothing of it is returned, cached or shipped."""


def _check_losses(losses: Tensor, lo: int, hi: int) -> None:
    """NonFiniteLoss naming the first step in lo..hi-1 whose loss (of any model: losses (..., steps)) is NaN or
    infinite, and the last finite loss before it. One host sync (the caller reads the loss then anyway)."""
    window = losses[..., lo:hi]
    if bool(torch.isfinite(window).all()):
        return
    bad = (~torch.isfinite(window)).reshape(-1, hi - lo).any(0).nonzero()[0, 0].item() + lo
    flat = losses.reshape(-1, losses.shape[-1])
    model = int((~torch.isfinite(flat[:, bad])).nonzero()[0, 0])
    before = flat[model, :bad]
    finite = torch.isfinite(before).nonzero()
    last = f"the last finite loss, {float(before[finite[-1, 0]]):.4g}, at step {int(finite[-1, 0]):,}" if len(finite) else "no finite loss before it"
    which = f" of model {model}" if flat.shape[0] > 1 else ""
    raise NonFiniteLoss(f"training diverged: the loss{which} is {float(flat[model, bad])} at step {bad:,} ({last}); the model is not kept. "
                        "Lower the learning rate or check the data's scale.")


class StaleTrainingState(ValueError):
    """:func:`train` was given a ``resume`` file that holds the state of another training (other config, data,
    initial weights, schedule, device or fast paths)."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. Defaults are the official code's: Adam lr 1e-3, betas (0.9, 0.999), batch
    10,000, no EMA, seed 1234. ``steps`` is the number of optimizer steps. ``rho``: the weight of VSM's
    smoothness penalty, for a learned-variance network only (:func:`diffusion_loss`; 0: none)."""

    steps: int = 20_000
    batch_size: int = 10_000
    lr: float = 1e-3
    adam_betas: tuple[float, float] = (0.9, 0.999)
    ema_decay: float | None = None
    seed: int = 1234
    rho: float = field(default=0.0, metadata=KEY_OMITS_DEFAULT)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            object.__setattr__(self, name, positive_int(getattr(self, name), f"TrainConfig.{name}"))  # a numpy int is stored as int
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        number_parameter(self.rho, "TrainConfig.rho", float, at_least=0)
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"TrainConfig.ema_decay must be in (0, 1) or None, got {self.ema_decay}")


@dataclass
class TrainResult:
    """A trained model, its EMA copy (if asked for), the loss of every step (numpy-ready CPU tensor) and the
    wall time in seconds."""

    model: nn.Module
    losses: Tensor
    ema_model: nn.Module | None
    wall_time_s: float


def diffusion_loss(model: Callable[[Tensor, Tensor], Tensor], schedule: NoiseSchedule, x0: Tensor, t: Tensor, eps: Tensor,
                   rho: float = 0.0) -> Tensor:
    """Unweighted epsilon-prediction MSE per sample: mean over non-batch dims of (model(x_t, t) - eps)^2.
    x0, eps: (B, ...); t: (B,) -> (B,). For a learned-variance network, the hybrid loss of :func:`loss_terms`."""
    return loss_terms(model, schedule, x0, t, eps, rho)["loss"]


def loss_terms(model: Callable[[Tensor, Tensor], Tensor], schedule: NoiseSchedule, x0: Tensor, t: Tensor, eps: Tensor,
               rho: float = 0.0) -> dict[str, Tensor]:
    """The per-sample (B,) terms of :func:`diffusion_loss`: ``mse`` and ``loss``, and for a learned-variance
    network ``vb`` and ``smooth`` too.

    A learned-variance network (its output has twice x's channels: eps, then v; :mod:`mi_lib.diffusion.nets`) is trained
    with Improved DDPM's hybrid loss, MSE + VB, where VB (in bits per dimension, times T / 1000 as in Improved
    DDPM) is KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) for t > 0 and the Gaussian negative log-likelihood of
    x_0 at t = 0 (continuous data: no 8-bit discretisation), with eps held fixed in it, so that VB trains the
    variance and MSE the mean. ``rho > 0`` adds VSM's penalty in the official VSM code's time-aware form,
    rho / sqrt(1 - alpha_bar_t) * smooth with smooth = mean(1 / (1 + J^2)) and J = -1 / sigma_theta^2, its
    diagonal proxy of the score's Jacobian. Like VB, the penalty reaches the network only through v."""
    xt = schedule.q_sample(x0, t, eps)
    out = model(xt, t)
    if out.shape == x0.shape:
        if rho:
            raise ValueError(f"rho={rho!r} needs a learned-variance network (MLPConfig(learn_sigma=True))")
        mse = (out - eps).square().flatten(1).mean(1)
        return {"mse": mse, "loss": mse}
    eps_hat, v = out.chunk(2, dim=1)
    mse = (eps_hat - eps).square().flatten(1).mean(1)
    log_var = schedule.learned_log_variance(v, t)
    mean = schedule.posterior_mean(schedule.x0_from_eps(xt, t, eps_hat.detach()), xt, t)
    true_mean = schedule.posterior_mean(x0, xt, t)
    true_log_var = broadcast_to(schedule.posterior_log_variance_clipped[t], x0)
    kl = 0.5 * (-1 + log_var - true_log_var + (true_log_var - log_var).exp() + (true_mean - mean).square() * (-log_var).exp())
    nll = 0.5 * (math.log(2 * math.pi) + log_var + (x0 - mean).square() * (-log_var).exp())
    vb = torch.where(broadcast_to(t == 0, x0), nll, kl).flatten(1).mean(1) / math.log(2.0) * (schedule.T / 1000)
    smooth = torch.sigmoid(2 * log_var).flatten(1).mean(1)  # 1 / (1 + J^2) with J = -exp(-log_var)
    loss = mse + vb
    if rho:
        loss = loss + rho / schedule.sqrt_one_minus_alpha_bar[t] * smooth
    return {"mse": mse, "vb": vb, "smooth": smooth, "loss": loss}


def train(
    model: nn.Module,
    data: Tensor,
    schedule: NoiseSchedule,
    config: TrainConfig = TrainConfig(),
    *,
    progress: bool = True,
    precision: str = "float32",
    compile: bool | str = False,
    fused: bool = False,
    graph: bool = False,
    resume: str | os.PathLike[str] | None = None,
    save_every_s: float = 120.0,
) -> TrainResult:
    """Fit ``model`` (in place) to ``data`` (N, ...) on ``data``'s device.

    Each epoch visits the data in a fresh random order, ``min(batch_size, N)`` samples a step; t is uniform
    on 0..T-1. All randomness comes from a generator seeded with ``config.seed``.

    Fast paths, all off by default (then results are bit-identical run to run on one device):
    ``precision`` ("float32", "tf32", "bf16": the forward pass under bf16 autocast, the loss and optimizer
    in float32) and ``compile`` as in :mod:`mi_lib.diffusion.fast`; ``fused=True`` uses Adam's fused CUDA kernel on a
    GPU and the default Adam elsewhere (on the CPU the results are those of ``fused=False``). ``graph=True``
    (CUDA only) captures the whole step -- forward, backward, Adam and the EMA update -- once as a CUDA graph
    and replays it: the host then launches five kernels a step instead of a few hundred. Its random draws
    are the reference's, made outside the graph in the same order into the buffers the graph reads, so it
    trains the reference's model up to Adam's on-device bias correction (``capturable=True``: the last bits).

    ``resume``: a file for the training state (see the module docstring). It is written (atomically) every
    ``save_every_s`` seconds of training, and once more at the end if it was written at all, so that a kill
    before the caller has stored the result loses nothing: the caller deletes it then (resuming from a final
    state returns the finished model at once). A file left by another training (other config, data, initial
    weights, schedule, device or fast paths) is an error, never silently reused. ``wall_time_s`` then counts
    the time of every part."""
    _check_data(data, "data")
    _check_step_options(fused, graph, compile, data.device)
    number_parameter(save_every_s, "save_every_s", float, at_least=0)
    device = data.device
    model.to(device).train()
    net = FastDenoiser(model, precision=precision, compile=compile, device=device)
    sched = schedule.to(device)
    fused_kw = {"fused": True} if fused and device.type == "cuda" else {}
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.adam_betas, capturable=graph, **fused_kw)
    ema = copy.deepcopy(model).eval().requires_grad_(False) if config.ema_decay is not None else None
    draws = _Draws(data, config, sched.T)
    losses = torch.empty(config.steps, device=device)
    state_path = Path(resume) if resume is not None else None
    first_step, earlier_s = 0, 0.0
    if state_path is not None:
        fingerprint = _fingerprint(model, data, schedule, config, precision, compile, fused, graph)
        state = load_or_warn(state_path, "training state") if state_path.exists() else None
        if state is not None:
            if state.get("fingerprint") != fingerprint:
                raise StaleTrainingState(f"{state_path} holds the state of another training (config, data, initial weights, schedule, "
                                 "device or fast paths differ); delete it to start this one from scratch")
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            if ema is not None:
                ema.load_state_dict(state["ema"])
            draws.gen.set_state(state["generator"])
            draws.order = state["order"].to(device)
            first_step, earlier_s = int(state["step"]), float(state["wall_time_s"])
            losses[:first_step] = state["losses"].to(device)
    start = last_save = time.perf_counter()

    def save(next_step: int) -> None:
        state = {
            "fingerprint": fingerprint, "step": next_step, "wall_time_s": earlier_s + time.perf_counter() - start,
            "model": model.state_dict(), "optimizer": opt.state_dict(), "ema": ema.state_dict() if ema is not None else {},
            "generator": draws.gen.get_state(), "order": draws.order.cpu(), "losses": losses[:next_step].cpu(),
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_atomic(state_path, state_path.stem, buffer.getvalue())

    # The step reads its batch from fixed buffers, which draws fills: what lets graph=True replay one capture.
    x0_b, t_b, eps_b = buffers = _buffers(data, draws.b, 1)
    x0_b, t_b, eps_b = x0_b[0], t_b[0], eps_b[0]

    def update() -> Tensor:  # one optimizer step on the buffers' batch; the mean loss
        loss = diffusion_loss(net, sched, x0_b, t_b, eps_b, config.rho).mean()
        loss.backward()
        opt.step()
        if ema is not None:
            with torch.no_grad():
                torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - config.ema_decay)
        return loss.detach()

    def after(step: int) -> None:  # save the state every save_every_s seconds
        nonlocal last_save
        if state_path is not None and step + 1 < config.steps and time.perf_counter() - last_save >= save_every_s:
            save(step + 1)
            last_save = time.perf_counter()

    live = [*model.parameters(), *(ema.parameters() if ema is not None else ())]
    _run_steps(update, live, opt, buffers, [data], sched.T, lambda step: draws.draw(step, x0_b, t_b, eps_b), losses, first_step,
               "training", progress, precision, graph, after)
    # A training that saved its state ends by saving the final one: the caller removes it once the result is
    # stored, so a kill in between loses nothing (a final state resumes to the finished model at once).
    if state_path is not None and state_path.exists() and first_step < config.steps:
        save(config.steps)
    model.eval()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return TrainResult(model, losses.cpu(), ema, earlier_s + time.perf_counter() - start)


def train_many(
    models: Sequence[nn.Module],
    datas: Sequence[Tensor],
    schedule: NoiseSchedule,
    configs: TrainConfig | Sequence[TrainConfig] = TrainConfig(),
    *,
    progress: bool = True,
    precision: str = "float32",
    compile: bool | str = False,
    fused: bool = False,
    graph: bool = False,
) -> list[TrainResult]:
    """Fit K networks of one architecture at once, as one stacked network: model i on ``datas[i]`` (N_i, ...)
    with ``configs[i]`` (one config: the same for all), each in place, on the data's device.

    Each model keeps exactly what :func:`train` gives it alone -- its data, its epoch order (models of
    different N have epochs of different lengths), its t and noise draws (its own generator, seeded with its
    config's seed) and its initial weights -- and Adam, being elementwise, updates each model's slice of the
    stacked weights as it would update that model alone. So model i's losses and weights are :func:`train`'s
    up to the rounding of a batched matrix product (``tests/test_train.py`` checks 1e-5 after 200 steps).
    The per-step cost is one network's kernels on K times the rows: on a GPU, where a 10k-row step of the
    official MLP is launch-bound, K models cost little more than one.

    The configs may differ in ``seed`` only, and every model must draw batches of the same size
    (``min(batch_size, N_i)``); the fast paths are :func:`train`'s. No resume file: a batched run is sized to
    finish within one call. Returns one :class:`TrainResult` per model (``wall_time_s``: the whole run's)."""
    models, datas = list(models), list(datas)
    k = len(models)
    if k < 1 or len(datas) != k:
        raise ValueError(f"train_many needs as many data sets as models (at least one), got {k} models and {len(datas)} data sets")
    configs = [configs] * k if isinstance(configs, TrainConfig) else list(configs)
    if len(configs) != k or not all(isinstance(c, TrainConfig) for c in configs):
        raise ValueError(f"configs must be one TrainConfig or one per model ({k}), got {len(configs)}")
    for name in ("steps", "batch_size", "lr", "adam_betas", "ema_decay", "rho"):
        values = {getattr(c, name) for c in configs}
        if len(values) > 1:
            raise ValueError(f"the models of one batched run share {name} (one optimizer, one loop); got {sorted(values, key=repr)}")
    kinds = {(type(m), getattr(m, "config", None)) for m in models}
    if len(kinds) > 1:
        raise ValueError(f"train_many stacks networks of one architecture; got {len(kinds)} different ones")
    for i, data in enumerate(datas):
        _check_data(data, f"data set {i}")
    if len({(d.device, d.dtype, d.shape[1:]) for d in datas}) > 1:
        raise ValueError("the data sets must share device, dtype and sample shape")
    config, device, T = configs[0], datas[0].device, schedule.T
    draws = [_Draws(d, c, T) for d, c in zip(datas, configs)]
    if len({dr.b for dr in draws}) > 1:
        raise ValueError(f"every model must draw batches of one size, min(batch_size, N): got {[dr.b for dr in draws]}")
    _check_step_options(fused, graph, compile, device)
    for m in models:
        m.to(device).train()
    params, buffers = stack_module_state(models)  # {name: (K, ...)} leaves that require grad
    base = copy.deepcopy(models[0]).to("meta")

    def stacked(x: Tensor, t: Tensor) -> Tensor:  # x (K, b, ...), t (K, b) -> eps (K, b, ...)
        return vmap(lambda p, bf, xi, ti: functional_call(base, (p, bf), (xi, ti)))(params, buffers, x, t)

    net = FastDenoiser(stacked, precision=precision, compile=compile, device=device)
    sched = schedule.to(device)
    fused_kw = {"fused": True} if fused and device.type == "cuda" else {}
    weights = list(params.values())
    opt = torch.optim.Adam(weights, lr=config.lr, betas=config.adam_betas, capturable=graph, **fused_kw)
    ema = [w.detach().clone() for w in weights] if config.ema_decay is not None else None
    b = draws[0].b
    x0_b, t_b, eps_b = bufs = _buffers(datas[0], b, k)
    sample_shape = tuple(x0_b.shape[2:])
    losses = torch.empty((k, config.steps), device=device)

    def flat_net(xt: Tensor, t: Tensor) -> Tensor:  # the stacked network seen as one (K*b, ...) denoiser
        out = net(xt.view(k, b, *sample_shape), t.view(k, b))
        return out.reshape(k * b, *out.shape[2:])  # eps (and v, for a learned-variance network)

    def update() -> Tensor:  # one optimizer step of every model; their mean losses (K,)
        per_sample = diffusion_loss(flat_net, sched, x0_b.view(k * b, *sample_shape), t_b.view(-1), eps_b.view(k * b, *sample_shape),
                                    config.rho)
        loss = per_sample.view(k, b).mean(1)
        loss.sum().backward()  # model i's weights get model i's gradient alone
        opt.step()
        if ema is not None:
            with torch.no_grad():
                torch._foreach_lerp_(ema, weights, 1 - config.ema_decay)
        return loss.detach()

    start = time.perf_counter()

    def draw(step: int) -> None:
        for i, dr in enumerate(draws):
            dr.draw(step, x0_b[i], t_b[i], eps_b[i])

    _run_steps(update, weights + (ema or []), opt, bufs, datas, T, draw, losses, 0, f"training {k} models", progress, precision, graph)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - start
    results = []
    with torch.no_grad():
        for i, model in enumerate(models):
            for (name, w) in params.items():
                model.get_parameter(name).copy_(w[i])
            ema_model = None
            if ema is not None:
                ema_model = copy.deepcopy(model).eval().requires_grad_(False)
                for name, e in zip(params, ema):
                    ema_model.get_parameter(name).copy_(e[i])
            model.eval()
            results.append(TrainResult(model, losses[i].cpu(), ema_model, wall))
    return results


def _run_steps(update: Callable[[], Tensor], live: list[Tensor], opt: torch.optim.Optimizer, buffers: tuple[Tensor, Tensor, Tensor],
               datas: list[Tensor], T: int, draw: Callable[[int], None], losses: Tensor, first_step: int, desc: str,
               progress: bool, precision: str, graph: bool, after: Callable[[int], None] | None = None) -> None:
    """The training loop of :func:`train` and :func:`train_many`: steps ``first_step`` .. of ``losses`` (..., steps),
    each ``draw(step)`` into the buffers, then one ``update()`` (or its CUDA-graph replay, ``graph``: see
    :func:`_capture`); the losses checked for NaN and inf every 100 steps; ``after(step)`` once a step is done."""
    steps, device = losses.shape[-1], losses.device
    with progress_bar(total=steps, desc=desc, disable=not progress, initial=first_step) as bar, precision_flags(precision, device):
        replay = _capture(update, live, opt, buffers, datas, T) if graph and first_step < steps else None
        checked = first_step  # losses before it were checked by the run that made them
        for step in range(first_step, steps):
            draw(step)
            if replay is None:
                opt.zero_grad(set_to_none=True)
                losses[..., step] = update()
            else:
                losses[..., step] = replay()
            if (step + 1) % 100 == 0 or step + 1 == steps:
                _check_losses(losses, checked, step + 1)
                checked = step + 1
                bar.update(step + 1 - bar.n)
                bar.set_postfix(loss=f"{losses[..., step].mean().item():.4f}", refresh=False)
            if after is not None:
                after(step)


def _check_data(data: Tensor, name: str) -> None:
    if not isinstance(data, Tensor) or data.dim() < 2 or data.shape[0] < 1:
        raise ValueError(f"{name} must be a tensor of shape (N, ...) with N >= 1, got {getattr(data, 'shape', type(data))}")
    if not data.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {data.dtype}")
    bad = int((~torch.isfinite(data)).sum())
    if bad:
        raise ValueError(f"{name} holds {bad:,} non-finite values (NaN or inf) among its {data.numel():,}: clean it before training")


def _check_step_options(fused: bool, graph: bool, compile: bool | str, device: torch.device) -> None:
    for name, value in (("fused", fused), ("graph", graph)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool, got {value!r}")
    if graph and compile is not False:
        raise ValueError("graph=True captures the eager step as a CUDA graph; it does not combine with compile (choose one)")
    if graph and device.type != "cuda":
        require_cuda(f"graph=True (CUDA graphs) with data on {device}")


def data_fingerprint(data: Tensor) -> str:
    """A sha256 of a tensor's shape, dtype and bytes: what a saved training state (and a recursion's model)
    records of the data it was trained on."""
    return _sha([data])


def weights_fingerprint(model: nn.Module) -> str:
    """A sha256 of a model's weights (its state dict's tensors, in order): what a recursion's candidate sets
    are keyed by, so that a retrained model never reuses another model's samples."""
    return _sha(list(model.state_dict().values()))


def _sha(tensors: list[Tensor]) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(str((tuple(t.shape), t.dtype)).encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class _Draws:
    """One model's random draws, the reference's, in its order: each epoch a fresh permutation of ``data``
    (N, ...), ``b = min(batch_size, N)`` samples a step (the last N mod b of an epoch unused), t uniform on
    0..T-1, eps standard normal; all from one generator seeded with ``config.seed`` on ``data``'s device."""

    def __init__(self, data: Tensor, config: TrainConfig, T: int):
        self.data, self.T = data, T
        self.n, self.b = data.shape[0], min(config.batch_size, data.shape[0])
        self.per_epoch = self.n // self.b
        self.gen = torch.Generator(device=data.device).manual_seed(config.seed)
        self.order = torch.empty(0, dtype=torch.long, device=data.device)

    def draw(self, step: int, x0: Tensor, t: Tensor, eps: Tensor) -> None:
        """Step ``step``'s batch into the buffers x0 (b, ...), t (b,), eps (b, ...)."""
        k = step % self.per_epoch
        if k == 0:
            self.order = torch.randperm(self.n, generator=self.gen, device=self.data.device)
        torch.index_select(self.data, 0, self.order[k * self.b : (k + 1) * self.b], out=x0)
        torch.randint(0, self.T, (self.b,), generator=self.gen, device=self.data.device, out=t)
        torch.randn(x0.shape, generator=self.gen, device=self.data.device, dtype=x0.dtype, out=eps)


def _buffers(data: Tensor, b: int, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """The batch buffers of k models: x0 (k, b, ...), t (k, b), eps (k, b, ...)."""
    x0 = torch.empty((k, b, *data.shape[1:]), dtype=data.dtype, device=data.device)
    return x0, torch.empty((k, b), dtype=torch.long, device=data.device), torch.empty_like(x0)


def _capture(update: Callable[[], Tensor], tensors: list[Tensor], opt: torch.optim.Optimizer,
             buffers: tuple[Tensor, Tensor, Tensor], datas: list[Tensor], T: int) -> Callable[[], Tensor]:
    """``update`` captured once as a CUDA graph; returns a function that replays it and returns its loss.

    Capture needs a few real steps first (cuBLAS workspaces, Adam's lazily made state), run on a side stream
    as torch's recipe says; they would change the training, so ``tensors`` (the weights and the EMA's) and
    Adam's state are saved before them and restored after. The buffers (k, b, ...) hold a valid dummy batch
    meanwhile (model i's first rows of ``datas[i]``, not the generators' draws, which belong to the training)."""
    x0_b, t_b, eps_b = buffers
    for i, data in enumerate(datas):
        x0_b[i].copy_(data[: x0_b.shape[1]])
    t_b.copy_(torch.arange(t_b.numel(), device=t_b.device).view_as(t_b) % T)
    eps_b.zero_()
    saved = [p.detach().clone() for p in tensors]
    saved_opt = {id(v): v.clone() for st in opt.state.values() for v in st.values() if isinstance(v, Tensor)}
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            update()
    torch.cuda.current_stream().wait_stream(side)
    with torch.no_grad():
        for p, v in zip(tensors, saved):
            p.copy_(v)
        for st in opt.state.values():  # Adam's state as it was: restored, or zero where it was made just now
            for v in st.values():
                if isinstance(v, Tensor) and id(v) in saved_opt:
                    v.copy_(saved_opt[id(v)])
                elif isinstance(v, Tensor):
                    v.zero_()
    opt.zero_grad(set_to_none=True)  # the graph's backward then makes .grad in its own memory pool
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        loss = update()

    def replay() -> Tensor:
        g.replay()
        return loss

    return replay


def _fingerprint(model: nn.Module, data: Tensor, schedule: NoiseSchedule, config: TrainConfig, precision: str, compile: bool | str,
                 fused: bool, graph: bool = False) -> str:
    """What a saved training state must match to be resumed: the config, the data and the initial weights (by
    content), the schedule's betas, the device type and the fast paths."""
    return json.dumps({
        "config": {k: repr(v) for k, v in dataclasses.asdict(config).items()},
        "data": _sha([data]),
        "initial_weights": [type(model).__name__, _sha(list(model.state_dict().values()))],
        "betas": _sha([schedule.beta_64]),
        "device": data.device.type,
        "fast": [precision, repr(compile), fused] + (["graph"] if graph else []),
    }, sort_keys=True)
