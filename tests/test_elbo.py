"""The ELBO gradient: closed forms, finite differences of whole models, subsampling, score function."""
import numpy as np
import pytest

import minippl
import minippl.distributions as dist
from minippl import handlers, nn
from minippl.distributions import constraints
from minippl.infer import SVI, GradientCheckError, Trace_ELBO, TraceMeanField_ELBO, check_gradients
from minippl.optim import Adam
from simple_models import model as normal_normal_model  # noqa: E402  (tests/ is on sys.path)


DATA = np.array([0.3, 1.2, -0.4, 2.0, 0.9])


def normal_normal_guide(x):
    loc = minippl.param("loc", np.array(0.4))
    scale = minippl.param("scale", np.array(0.7), constraint=constraints.positive)
    minippl.sample("z", dist.Normal(loc, scale))


def test_pyro_normal_normal_particle_gradient_in_closed_form():
    # L = log q(z) - log p(z) - sum_i log p(x_i | z), z = loc + scale * eps:
    #   dL/dloc = (N + 1) z - sum x          (log q is constant in loc at fixed eps)
    #   dL/dscale = -1/scale + ((N + 1) z - sum x) * eps;  dL/du = scale * dL/dscale, u = log scale
    with handlers.seed(rng_seed=7):
        loss, grads, _ = Trace_ELBO().loss_and_grads(normal_normal_model, normal_normal_guide, DATA)
    with handlers.seed(rng_seed=7):
        z = handlers.trace(normal_normal_guide).get_trace(DATA).nodes["z"]["value"]
    loc, scale = 0.4, 0.7
    eps = (z - loc) / scale
    n = len(DATA)
    dz = (n + 1) * z - DATA.sum()
    np.testing.assert_allclose(grads["loc"], dz, rtol=1e-6)
    np.testing.assert_allclose(grads["scale"], scale * (-1 / scale + dz * eps), rtol=1e-6)
    log_q = -0.5 * eps**2 - np.log(scale) - 0.5 * np.log(2 * np.pi)
    log_p = -0.5 * z**2 - 0.5 * np.sum((DATA - z) ** 2) - (n + 1) * 0.5 * np.log(2 * np.pi)
    assert loss == pytest.approx(log_q - log_p, rel=1e-12)


def test_conjugate_normal_converges_to_exact_posterior():
    rng = np.random.default_rng(0)
    x = 3.0 + rng.standard_normal(100)

    def guide(x):
        loc = minippl.param("loc", np.array(0.0))
        log_scale = minippl.param("log_scale", np.array(0.0))
        minippl.sample("z", dist.Normal(loc, nn.functional.exp(log_scale)))

    minippl.set_rng_seed(0)
    svi = SVI(normal_normal_model, guide, Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(1500):
        svi.step(x)
    post_mean, post_sd = x.sum() / 101, 1 / np.sqrt(101)
    store = minippl.get_param_store()
    assert abs(store["loc"] - post_mean) < 0.05
    assert abs(np.exp(store["log_scale"]) / post_sd - 1) < 0.2


# ---------------------------------------------------------------- whole-ELBO finite differences
def test_fd_normal_normal_in_a_plate():
    check_gradients(normal_normal_model, normal_normal_guide, DATA)


def test_fd_constrained_params_interval_and_greater_than():
    def model(x):
        rate = minippl.param("noise", np.array(0.8), constraint=constraints.interval(0.1, 5.0))
        shift = minippl.param("shift", np.array(1.5), constraint=constraints.greater_than(1.0))
        z = minippl.sample("z", dist.Normal(shift, 2.0))
        with minippl.plate("data", len(x)):
            minippl.sample("x", dist.Normal(z, rate), obs=x)

    def guide(x):
        loc = minippl.param("loc", np.array(0.1))
        scale = minippl.param("scale", np.array(0.5), constraint=constraints.unit_interval)
        minippl.sample("z", dist.Normal(loc, scale))

    report = check_gradients(model, guide, DATA)
    assert set(report) == {"noise", "shift", "loc", "scale"}


class Encoder(nn.Module):
    def __init__(self, x_dim, h_dim, z_dim):
        super().__init__()
        self.fc1 = nn.Dense(x_dim, h_dim, dtype=np.float64)
        self.fc21 = nn.Dense(h_dim, z_dim, dtype=np.float64)
        self.fc22 = nn.Dense(h_dim, z_dim, dtype=np.float64)
        self.softplus = nn.Softplus()

    def forward(self, x):
        hidden = self.softplus(self.fc1(x))
        return self.fc21(hidden), nn.functional.exp(self.fc22(hidden))


class Decoder(nn.Module):
    def __init__(self, z_dim, h_dim, x_dim):
        super().__init__()
        self.fc1 = nn.Dense(z_dim, h_dim, dtype=np.float64)
        self.fc2 = nn.Dense(h_dim, x_dim, dtype=np.float64)
        self.softplus = nn.Softplus()
        self.sigmoid = nn.Sigmoid()

    def forward(self, z):
        return self.sigmoid(self.fc2(self.softplus(self.fc1(z))))


class SmallVAE:
    def __init__(self, x_dim=6, h_dim=5, z_dim=2):
        self.encoder, self.decoder, self.z_dim = Encoder(x_dim, h_dim, z_dim), Decoder(z_dim, h_dim, x_dim), z_dim

    def model(self, x):
        minippl.module("decoder", self.decoder)
        with minippl.plate("data", x.shape[0]):
            z = minippl.sample("z", dist.Normal(np.zeros((x.shape[0], self.z_dim)), 1.0).to_event(1))
            minippl.sample("obs", dist.Bernoulli(self.decoder(z)).to_event(1), obs=x)

    def guide(self, x):
        minippl.module("encoder", self.encoder)
        with minippl.plate("data", x.shape[0]):
            loc, scale = self.encoder(x)
            minippl.sample("z", dist.Normal(loc, scale).to_event(1))


def grey_images(n=4, d=6, seed=0):
    return np.random.default_rng(seed).random((n, d))


def test_fd_small_vae_all_layers():
    minippl.set_rng_seed(0)
    vae = SmallVAE()
    report = check_gradients(vae.model, vae.guide, grey_images())
    assert "decoder$$$fc1.weight" in report and "encoder$$$fc22.bias" in report


def test_fd_small_vae_mean_field_and_particles():
    minippl.set_rng_seed(1)
    vae = SmallVAE()
    check_gradients(vae.model, vae.guide, grey_images(), loss=TraceMeanField_ELBO())
    check_gradients(vae.model, vae.guide, grey_images(), loss=Trace_ELBO(num_particles=3))


def test_mean_field_loss_is_the_expected_trace_loss():
    # E over noise of Trace_ELBO's loss equals TraceMeanField_ELBO's (KL exact in the latter)
    minippl.set_rng_seed(2)
    vae = SmallVAE()
    x = grey_images()
    with handlers.seed(rng_seed=0):
        mc = np.mean([Trace_ELBO().loss(vae.model, vae.guide, x) for _ in range(4000)])
        mf = np.mean([TraceMeanField_ELBO().loss(vae.model, vae.guide, x) for _ in range(4000)])
    assert mc == pytest.approx(mf, rel=5e-3)


def test_plain_numpy_arithmetic_between_sites_is_differentiated():
    x = np.linspace(-1, 1, 6)
    y = 1.0 + 2.0 * x

    def model(x, y):
        a = minippl.sample("a", dist.Normal(0.0, 1.0))
        b = minippl.sample("b", dist.Normal(0.0, 1.0))
        with minippl.plate("data", len(x)):
            minippl.sample("y", dist.Normal(a + b * x, 0.5), obs=y)  # recorded: traced values

    def guide(x, y):
        for name in ("a", "b"):
            loc = minippl.param(f"{name}_loc", np.array(0.0))
            minippl.sample(name, dist.Normal(loc, 0.3))

    check_gradients(model, guide, x, y)
    # the same gradient as the model written with nn.functional's recorded ops
    _, grads, _ = Trace_ELBO().loss_and_grads(handlers.seed(model, rng_seed=1), handlers.seed(guide, rng_seed=1), x, y)

    def functional_model(x, y):
        F = nn.functional
        a = minippl.sample("a", dist.Normal(0.0, 1.0))
        b = minippl.sample("b", dist.Normal(0.0, 1.0))
        with minippl.plate("data", len(x)):
            minippl.sample("y", dist.Normal(F.add(a, F.mul(b, x)), 0.5), obs=y)

    _, grads_f, _ = Trace_ELBO().loss_and_grads(handlers.seed(functional_model, rng_seed=1),
                                                handlers.seed(guide, rng_seed=1), x, y)
    for name in ("a_loc", "b_loc"):
        np.testing.assert_allclose(grads[name], grads_f[name], rtol=1e-12)


def test_a_wrong_hand_written_backward_is_caught_and_names_the_params():
    class Affine(nn.Module):  # y = a + b x, with a backward that forgets the factor x
        def forward(self, a, b, x):
            return a + b * x, x

        def backward(self, x, grad_y, needs_input_grad):
            return (grad_y.sum(), grad_y.sum(), None), {}  # wrong: d/db is sum(g x)

    x = np.linspace(-1, 1, 6)

    def model(x):
        a = minippl.sample("a", dist.Normal(0.0, 1.0))
        b = minippl.sample("b", dist.Normal(0.0, 1.0))
        with minippl.plate("data", len(x)):
            minippl.sample("y", dist.Normal(Affine()(a, b, x), 0.5), obs=1.0 + 2.0 * x)

    def guide(x):
        for name in ("a", "b"):
            minippl.sample(name, dist.Normal(minippl.param(f"{name}_loc", np.array(0.0)), 0.3))

    with pytest.raises(GradientCheckError, match="'b_loc'"):
        check_gradients(model, guide, x)


def test_a_slice_of_a_traced_array_carries_its_gradient():
    def model(x):
        z = minippl.sample("z", dist.Normal(np.zeros(2), 1.0).to_event(1))
        minippl.sample("x", dist.Normal(z[:1], 1.0).to_event(1), obs=x)

    def guide(x):
        loc = minippl.param("loc", np.array([0.3, -0.2]))
        minippl.sample("z", dist.Normal(loc, 1.0).to_event(1))

    check_gradients(model, guide, np.ones(1))
    # with the noise replayed: d loss/d loc = (z - 0) + [(z_0 - x), 0], the prior's and the likelihood's pull
    tr = handlers.trace(handlers.seed(guide, rng_seed=3)).get_trace(np.ones(1))
    z = np.asarray(tr.nodes["z"]["value"])
    _, grads, _ = Trace_ELBO().loss_and_grads(model, handlers.seed(guide, rng_seed=3), np.ones(1))
    np.testing.assert_allclose(grads["loc"], z + np.array([z[0] - 1.0, 0.0]), rtol=1e-12)


# ---------------------------------------------------------------- subsampling
def subsample_model(x, idx=None):
    z = minippl.sample("z", dist.Normal(0.0, 1.0))
    with minippl.plate("data", len(x), subsample=idx) as i:
        minippl.sample("x", dist.Normal(z, 1.0), obs=x[i])


def subsample_guide(x, idx=None):
    loc = minippl.param("loc", np.array(0.2))
    minippl.sample("z", dist.Normal(loc, 0.5))


def test_subsample_scale_is_exact_and_estimates_are_unbiased():
    x = np.array([0.3, 1.2, -0.4, 2.0, 0.9])
    with handlers.seed(rng_seed=0):
        full_loss, full_grads, _ = Trace_ELBO().loss_and_grads(subsample_model, subsample_guide, x)
    losses, grads = [], []
    for idx in ([0, 1], [0, 2], [0, 3], [0, 4], [1, 2], [1, 3], [1, 4], [2, 3], [2, 4], [3, 4]):
        with handlers.seed(rng_seed=0):  # same z for every subsample
            loss, g, _ = Trace_ELBO().loss_and_grads(subsample_model, subsample_guide, x, np.array(idx))
        z = handlers.trace(handlers.seed(subsample_guide, rng_seed=0)).get_trace(x).nodes["z"]["value"]
        # exact scale: the data term of this subsample counts 5 / 2 = 2.5 times
        data_lp = -0.5 * np.sum((x[idx] - z) ** 2) - len(idx) * 0.5 * np.log(2 * np.pi)
        log_q = -0.5 * ((z - 0.2) / 0.5) ** 2 - np.log(0.5) - 0.5 * np.log(2 * np.pi)
        log_prior = -0.5 * z**2 - 0.5 * np.log(2 * np.pi)
        assert loss == pytest.approx(log_q - log_prior - 2.5 * data_lp, rel=1e-12)
        losses.append(loss)
        grads.append(g["loc"])
    # averaging over every subsample of size 2 recovers the full-data loss and gradient
    assert np.mean(losses) == pytest.approx(full_loss, rel=1e-12)
    assert np.mean(grads) == pytest.approx(full_grads["loc"], rel=1e-10)


def test_random_subsample_fd_gradient():
    x = np.linspace(-1, 2, 20)

    def model(x):
        z = minippl.sample("z", dist.Normal(0.0, 1.0))
        with minippl.plate("data", len(x), subsample_size=6) as i:
            minippl.sample("x", dist.Normal(z, 1.0), obs=x[i])

    check_gradients(model, subsample_guide, x)


# ---------------------------------------------------------------- score function
def bernoulli_model():
    minippl.sample("c", dist.Bernoulli(probs=0.3))
    minippl.sample("y", dist.Normal(0.0, 1.0), obs=np.array(0.4))


def bernoulli_guide():
    logit = minippl.param("logit", np.array(0.2))
    minippl.sample("c", dist.Bernoulli(logits=logit))


def test_score_function_gradient_is_pyros_surrogate():
    with handlers.seed(rng_seed=3):
        loss, grads, _ = Trace_ELBO().loss_and_grads(bernoulli_model, bernoulli_guide)
    with handlers.seed(rng_seed=3):
        c = handlers.trace(bernoulli_guide).get_trace().nodes["c"]["value"]
    q = 1 / (1 + np.exp(-0.2))
    log_q = c * np.log(q) + (1 - c) * np.log(1 - q)
    log_p = c * np.log(0.3) + (1 - c) * np.log(0.7)
    log_r = log_p - log_q  # the observed y is in no plate, so it is summed in too; it is constant
    log_r += -0.5 * 0.4**2 - 0.5 * np.log(2 * np.pi)
    # d/dlogit of -log_r * log q(c) with log_r held fixed; d log q / d logit = c - q
    np.testing.assert_allclose(grads["logit"], -log_r * (c - q), rtol=1e-10)
    check_gradients(bernoulli_model, bernoulli_guide)


def test_score_function_gradient_is_unbiased():
    # exact: d/dlogit of E_q[log q - log p] summed over c in {0, 1}
    def exact_loss(logit):
        q = 1 / (1 + np.exp(-logit))
        return q * np.log(q / 0.3) + (1 - q) * np.log((1 - q) / 0.7) + 0.5 * 0.4**2 + 0.5 * np.log(2 * np.pi)

    exact = (exact_loss(0.2 + 1e-6) - exact_loss(0.2 - 1e-6)) / 2e-6
    with handlers.seed(rng_seed=0):
        _, grads, _ = Trace_ELBO(num_particles=20000).loss_and_grads(bernoulli_model, bernoulli_guide)
    assert grads["logit"] == pytest.approx(exact, abs=0.01)


# ---------------------------------------------------------------- model/guide mistakes
def test_latent_site_missing_in_guide():
    def model():
        minippl.sample("z", dist.Normal(0.0, 1.0))
        minippl.sample("w", dist.Normal(0.0, 1.0))

    def guide():
        minippl.sample("z", dist.Normal(minippl.param("m", np.array(0.0)), 1.0))

    with pytest.raises(ValueError, match="'w' is latent in the model but the guide does not sample it"):
        Trace_ELBO().loss(model, guide)
    with pytest.raises(ValueError, match="the guide samples 'w' but the model has no site"):
        Trace_ELBO().loss(guide, model)


def test_log_prob_shape_outside_plates_says_how_to_fix():
    def model(x):
        minippl.sample("x", dist.Normal(np.zeros(3), 1.0), obs=x)

    with pytest.raises(ValueError, match=r"sample site 'x'.*\.to_event\(1\).*plate"):
        Trace_ELBO().loss(model, lambda x: None, np.zeros(3))


def test_unregistered_network_warns():
    dec = nn.Dense(2, 3, dtype=np.float64)

    def model(x):
        z = minippl.sample("z", dist.Normal(np.zeros(2), 1.0).to_event(1))
        minippl.sample("x", dist.Normal(dec(z), 1.0).to_event(1), obs=x)

    def guide(x):
        minippl.sample("z", dist.Normal(minippl.param("m", np.zeros(2)), 1.0).to_event(1))

    with pytest.warns(UserWarning, match="minippl.module"):
        Trace_ELBO().loss_and_grads(model, guide, np.zeros(3))


def test_log_r_of_a_local_discrete_site_keeps_its_items_apart():
    # c_i ~ Bernoulli in a plate: the score of item i sees item i's terms and every global term
    from minippl.infer.elbo import compute_log_r, get_traces

    x = np.array([0.2, 1.4, -0.3])

    def model(x):
        z = minippl.sample("z", dist.Normal(0.0, 1.0))
        with minippl.plate("data", 3):
            c = minippl.sample("c", dist.Bernoulli(probs=0.4))
            minippl.sample("x", dist.Normal(nn.functional.add(c, z), 1.0), obs=x)

    def guide(x):
        minippl.sample("z", dist.Normal(minippl.param("m", np.array(0.1)), 0.5))
        with minippl.plate("data", 3):
            minippl.sample("c", dist.Bernoulli(probs=minippl.param("p", np.full(3, 0.3))))

    with handlers.seed(rng_seed=0):
        model_tr, guide_tr = get_traces(model, guide, (x,), {})
    lp = {(side, n): s["fn"].log_prob(s["value"]) for side, tr in (("model", model_tr), ("guide", guide_tr))
          for n, s in tr.sample_sites().items()}
    log_r = compute_log_r(model_tr, guide_tr, lp)["c"]
    per_item = lp["model", "c"] - lp["guide", "c"] + lp["model", "x"]
    global_term = lp["model", "z"] - lp["guide", "z"]
    np.testing.assert_allclose(log_r, per_item + global_term, rtol=1e-12)
    check_gradients(model, guide, x)
