"""Learned variance and VSM's penalty (mi_lib.diffusion.train.loss_terms, the sampler's variance="learned", the keys of
the fields they added): the pieces chapter 8's VSM sweep stands on."""

import math

import pytest
import torch

import mi_lib as mi
from mi_lib.storage.cache import canonical
from mi_lib.storage.checkpoints import spec_key
from mi_lib.diffusion.train import loss_terms

SCHED = mi.NoiseSchedule(mi.OFFICIAL)


class WithV(torch.nn.Module):
    """A plain network's eps with a constant v appended: a learned-variance network whose variance is known."""

    def __init__(self, net, v):
        super().__init__()
        self.net, self.v = net, v

    def forward(self, x, t):
        eps = self.net(x, t)
        return torch.cat([eps, torch.full_like(eps, self.v)], dim=1)


def test_the_new_fields_leave_every_earlier_key_alone_and_enter_it_when_set():
    plain = mi.MixtureModelSpec("1d", (1.0, 2.0, 3.0))
    assert "learn_sigma" not in canonical(plain.model) and "rho" not in canonical(plain.train)
    vsm = plain.replace(model=mi.MLPConfig(learn_sigma=True), train=mi.TrainConfig(rho=0.1))
    learned = plain.replace(model=mi.MLPConfig(learn_sigma=True))
    assert len({spec_key(plain), spec_key(vsm), spec_key(learned)}) == 3
    with pytest.raises(ValueError, match="learn_sigma"):
        mi.MixtureModelSpec("1d", train=mi.TrainConfig(rho=0.1))
    with pytest.raises(ValueError, match="rho"):
        mi.TrainConfig(rho=-1.0)


def test_vb_is_zero_where_the_network_is_the_true_posterior_and_the_penalty_is_sigma4_over_1_plus_sigma4():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(512, 2, generator=g)
    eps = torch.randn(512, 2, generator=g)
    t = torch.randint(0, SCHED.T, (512,), generator=g)
    t[:8] = 0
    oracle = lambda xt, tt: torch.cat([eps, torch.full_like(eps, -1.0)], dim=1)  # eps exact, sigma^2 = beta tilde
    terms = loss_terms(oracle, SCHED, x0, t, eps, rho=0.5)
    later = t > 0
    assert terms["mse"].abs().max() == 0
    torch.testing.assert_close(terms["vb"][later], torch.zeros(int(later.sum())), atol=1e-5, rtol=0)
    # at t = 0 the Gaussian NLL of x_0 at its own mean, with the variance clipped to beta tilde_1, in bits
    var0 = float(SCHED.posterior_variance[1])
    torch.testing.assert_close(terms["vb"][~later], torch.full((8,), 0.5 * math.log(2 * math.pi * var0) / math.log(2.0)))
    var = SCHED.posterior_log_variance_clipped[t].exp()
    torch.testing.assert_close(terms["smooth"], var**2 / (1 + var**2))
    torch.testing.assert_close(terms["loss"], terms["vb"] + 0.5 / SCHED.sqrt_one_minus_alpha_bar[t] * terms["smooth"])


def test_vb_and_the_penalty_train_only_the_variance_output():
    net = mi.MLPDenoiser(mi.MLPConfig(learn_sigma=True))
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(256, 1, generator=g), torch.randn(256, 1, generator=g)
    t = torch.randint(0, SCHED.T, (256,), generator=g)
    terms = loss_terms(net, SCHED, x0, t, eps, rho=1.0)
    (terms["vb"] + terms["smooth"]).sum().backward()
    grad = net.out_proj.weight.grad
    assert grad[0].abs().max() == 0 and grad[1].abs().max() > 0  # row 0 makes eps, row 1 makes v
    with pytest.raises(ValueError, match="learned-variance"):
        loss_terms(mi.MLPDenoiser(), SCHED, x0, t, eps, rho=0.1)


@pytest.mark.parametrize("v, fixed", [(1.0, "large"), (-1.0, "small")])
def test_learned_variance_at_its_ends_samples_as_beta_and_beta_tilde(v, fixed):
    net = mi.ExactDenoiser(mi.make_dataset("1d"), SCHED)  # an untrained network's samples are NaN under this schedule
    learned = mi.sample(WithV(net, v), SCHED, 64, shape=(1,), variance="learned", seed=3, progress=False).x0
    reference = mi.sample(net, SCHED, 64, shape=(1,), variance=fixed, seed=3, progress=False).x0
    torch.testing.assert_close(learned, reference, rtol=1e-4, atol=1e-4)


def test_learned_variance_needs_a_network_that_learns_it():
    with pytest.raises(ValueError, match="learn_sigma"):
        mi.sample(mi.MLPDenoiser(), SCHED, 16, variance="learned", progress=False)


def test_a_learned_variance_network_trains_alone_and_batched_alike():
    spec = mi.MixtureModelSpec("1d", (1.0, 2.0, 3.0), n_train=400, model=mi.MLPConfig(learn_sigma=True),
                               train=mi.TrainConfig(steps=30, batch_size=200, rho=0.1))
    data = spec.training_data()
    alone = mi.train(mi.diffusion.models.initial_model(spec.model, 0), data, SCHED, spec.train, progress=False)
    both = mi.train_many([mi.diffusion.models.initial_model(spec.model, 0)], [data], SCHED, spec.train, progress=False)
    torch.testing.assert_close(both[0].losses, alone.losses, rtol=1e-4, atol=1e-5)
    assert torch.isfinite(alone.losses).all() and alone.losses[-1] < alone.losses[0]
