"""Models written exactly as Pyro's tutorials write them (plain NumPy arithmetic between sites)
train to the right answer with default settings.

Each one would silently lose gradients without traced values: the regression's posterior
would stay at the prior, the guide's params would never move. The answers are exact
(conjugate posteriors, group means) or checked against float64 finite differences.
"""
import numpy as np
import pytest

import minippl
import minippl.distributions as dist
from minippl import nn
from minippl.distributions import constraints
from minippl.infer import SVI, Trace_ELBO, check_gradients
from minippl.infer.autoguide import AutoNormal
from minippl.nn import PyroModule, PyroSample
from minippl.optim import Adam
from simple_models import model  # z ~ N(0, 1), x_i ~ N(z, 1)  # noqa: E402  (tests/ is on sys.path)

RNG = np.random.default_rng(0)


def train(model, guide, *args, steps=3000, lr=0.02, average_last=500):
    """Adam with Pyro's defaults; returns the params averaged over the last steps (less SGD noise)."""
    svi = SVI(model, guide, Adam({"lr": lr}), Trace_ELBO())
    store, totals = minippl.get_param_store(), {}
    for step in range(steps):
        svi.step(*args)
        if step >= steps - average_last:
            for name, value in store.items():
                totals[name] = totals.get(name, 0.0) + np.asarray(value) / average_last
    return totals


# ---------------------------------------------------------------- the intro tutorial's regression
X = np.linspace(-2.0, 2.0, 40)  # centred, so the exact posteriors of a and b are independent
Y = 1.0 + 2.0 * X + 0.5 * RNG.standard_normal(40)
SIGMA, PRIOR_SCALE = 0.5, 10.0


def regression_model(x, y):
    a = minippl.sample("a", dist.Normal(0.0, PRIOR_SCALE))
    b = minippl.sample("b", dist.Normal(0.0, PRIOR_SCALE))
    mean = a + b * x
    with minippl.plate("data", len(x)):
        minippl.sample("obs", dist.Normal(mean, SIGMA), obs=y)


def regression_guide(x, y):
    for name in ("a", "b"):
        loc = minippl.param(f"{name}_loc", np.array(0.0))
        scale = minippl.param(f"{name}_scale", np.array(1.0), constraint=constraints.positive)
        minippl.sample(name, dist.Normal(loc, scale))


def exact_regression_posterior():
    design = np.stack([np.ones_like(X), X], axis=1)
    precision = design.T @ design / SIGMA**2 + np.eye(2) / PRIOR_SCALE**2
    covariance = np.linalg.inv(precision)
    return covariance @ design.T @ Y / SIGMA**2, np.sqrt(np.diag(covariance))


def test_a_plus_b_x_regression_reaches_the_exact_posterior():
    check_gradients(regression_model, regression_guide, X, Y)
    params = train(regression_model, regression_guide, X, Y)
    mean, sd = exact_regression_posterior()
    np.testing.assert_allclose([params["a_loc"], params["b_loc"]], mean, atol=0.01)
    np.testing.assert_allclose([params["a_scale"], params["b_scale"]], sd, rtol=0.1)


# ---------------------------------------------------------------- np.exp(log_scale) in a guide
def test_exp_of_a_log_scale_param_in_the_guide():
    data = 3.0 + RNG.standard_normal(20)

    def guide(x):
        loc = minippl.param("loc", np.array(0.0))
        log_scale = minippl.param("log_scale", np.array(0.0))
        minippl.sample("z", dist.Normal(loc, np.exp(log_scale)))

    check_gradients(model, guide, data)
    params = train(model, guide, data)
    # N(0, 1) prior, unit noise: the posterior is N(sum x / (n + 1), 1 / (n + 1))
    assert params["loc"] == pytest.approx(data.sum() / 21, abs=0.03)  # the posterior sd is 0.22
    assert np.exp(params["log_scale"]) == pytest.approx(np.sqrt(1 / 21), rel=0.1)


# ---------------------------------------------------------------- locs[k] with a learned param
def test_indexing_a_learned_param_with_labels_and_with_an_int():
    labels = RNG.integers(0, 3, size=60)
    y = np.array([-2.0, 0.5, 4.0])[labels] + 0.3 * RNG.standard_normal(60)

    def model(y):
        locs = minippl.param("locs", np.zeros(3))  # maximum likelihood: an empty guide
        weights_loc = minippl.param("weights_loc", np.zeros(2))
        with minippl.plate("data", len(y)):
            minippl.sample("obs", dist.Normal(locs[labels] + 0.0 * weights_loc[0], 0.3), obs=y)

    check_gradients(model, lambda y: None, y)
    params = train(model, lambda y: None, y, steps=2000, lr=0.05)
    group_means = [y[labels == k].mean() for k in range(3)]
    np.testing.assert_allclose(params["locs"], group_means, atol=0.01)


# ---------------------------------------------------------------- Pyro's VAE with np.exp and a hand sigmoid
class Encoder(nn.Module):
    def __init__(self, x_dim, z_dim, hidden_dim):
        super().__init__()
        self.fc1 = nn.Linear(x_dim, hidden_dim, dtype=np.float64)
        self.fc21 = nn.Linear(hidden_dim, z_dim, dtype=np.float64)
        self.fc22 = nn.Linear(hidden_dim, z_dim, dtype=np.float64)
        self.softplus = nn.Softplus()

    def forward(self, x):
        hidden = self.softplus(self.fc1(x))
        return self.fc21(hidden), np.exp(self.fc22(hidden))  # Pyro: torch.exp(self.fc22(hidden))


class Decoder(nn.Module):
    def __init__(self, x_dim, z_dim, hidden_dim):
        super().__init__()
        self.fc1 = nn.Linear(z_dim, hidden_dim, dtype=np.float64)
        self.fc21 = nn.Linear(hidden_dim, x_dim, dtype=np.float64)

    def forward(self, z):
        hidden = np.logaddexp(0.0, self.fc1(z))  # softplus written with NumPy
        return 1 / (1 + np.exp(-self.fc21(hidden)))  # a hand-written sigmoid


class VAE(nn.Module):
    def __init__(self, x_dim=6, z_dim=2, hidden_dim=5):
        super().__init__()
        self.encoder, self.decoder, self.z_dim = Encoder(x_dim, z_dim, hidden_dim), Decoder(x_dim, z_dim, hidden_dim), z_dim

    def model(self, x):
        minippl.module("decoder", self.decoder)
        with minippl.plate("data", x.shape[0]):
            z_loc = np.zeros((x.shape[0], self.z_dim))
            z = minippl.sample("latent", dist.Normal(z_loc, np.ones_like(z_loc)).to_event(1))
            minippl.sample("obs", dist.Bernoulli(self.decoder(z)).to_event(1), obs=x)

    def guide(self, x):
        minippl.module("encoder", self.encoder)
        with minippl.plate("data", x.shape[0]):
            z_loc, z_scale = self.encoder(x)
            minippl.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))


def test_vae_written_with_numpy_exp_and_a_hand_sigmoid_has_the_right_gradient_and_trains():
    vae, x = VAE(), (RNG.random((8, 6)) < 0.3).astype(np.float64)
    check_gradients(vae.model, vae.guide, x)
    svi = SVI(vae.model, vae.guide, Adam({"lr": 0.01}), Trace_ELBO())
    first = np.mean([svi.step(x) for _ in range(20)])
    last = np.mean([svi.step(x) for _ in range(300)][-20:])
    assert last < first - 1.0  # the decoder trains (it would stay put if its gradient were lost)


# ---------------------------------------------------------------- a Bayesian layer: x @ w.T + b
class BayesianLinear(PyroModule):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.weight = PyroSample(dist.Normal(0.0, 1.0).expand([out_features, in_features]).to_event(2))
        self.bias = PyroSample(dist.Normal(0.0, 10.0).expand([out_features]).to_event(1))

    def forward(self, x, y=None):
        mean = (x @ self.weight.T + self.bias)[..., 0]  # written as in the PyroModule tutorial
        with minippl.plate("data", x.shape[0]):
            minippl.sample("obs", dist.Normal(mean, 0.1), obs=y)
        return mean


def test_bayesian_layer_written_with_matmul_in_a_pyro_module():
    inputs = RNG.standard_normal((50, 2))
    targets = inputs @ np.array([1.5, -0.5]) + 0.3 + 0.1 * RNG.standard_normal(50)
    model = BayesianLinear(2, 1)
    guide = AutoNormal(model)
    check_gradients(model, guide, inputs, targets)
    train(model, guide, inputs, targets, steps=2000, lr=0.03, average_last=1)
    median = guide.median(inputs, targets)
    least_squares = np.linalg.lstsq(np.c_[inputs, np.ones(50)], targets, rcond=None)[0]
    np.testing.assert_allclose(median["weight"].ravel(), least_squares[:2], atol=0.02)
    np.testing.assert_allclose(median["bias"], least_squares[2:], atol=0.02)


def test_the_readme_taste_prints_what_the_readme_says(capsys):
    import pathlib

    readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    taste = readme[readme.index("## A taste"):]
    code = taste[taste.index("```python") + len("```python"):taste.index("```\n", taste.index("```python") + 9)]
    exec(compile(code, "README taste", "exec"), {})
    printed = capsys.readouterr().out.strip()
    claimed = next(line for line in code.splitlines() if line.startswith("# {"))[2:]
    assert printed == claimed


def test_plain_arrays_of_a_pyro_module_are_traced_in_its_forward():
    class PointRegression(PyroModule):  # nn.Parameter-style point estimates used in plain NumPy
        def __init__(self):
            super().__init__()
            self.w, self.b = np.zeros(2), np.zeros(1)

        def forward(self, x, y=None):
            mean = x @ self.w + self.b
            with minippl.plate("data", x.shape[0]):
                minippl.sample("obs", dist.Normal(mean, 0.1), obs=y)

    inputs = RNG.standard_normal((30, 2))
    targets = inputs @ np.array([0.7, -1.2]) + 0.4
    model = PointRegression()
    check_gradients(model, lambda x, y: None, inputs, targets)
    train(model, lambda x, y: None, inputs, targets, steps=1500, lr=0.05, average_last=1)
    np.testing.assert_allclose(model.w, [0.7, -1.2], atol=1e-3)  # the module's own arrays were trained
    np.testing.assert_allclose(model.b, [0.4], atol=1e-3)


def test_deterministic_of_traced_arithmetic_trains_and_predictive_returns_it():
    from minippl.infer import Predictive

    def model(x, y=None):
        a = minippl.sample("a", dist.Normal(0.0, PRIOR_SCALE))
        b = minippl.sample("b", dist.Normal(0.0, PRIOR_SCALE))
        mean = minippl.deterministic("mean", a + b * x)  # Pyro's Predictive tutorial records the mean
        with minippl.plate("data", len(x)):
            minippl.sample("obs", dist.Normal(mean, SIGMA), obs=y)

    params = train(model, regression_guide, X, Y, steps=1500, lr=0.05, average_last=1)
    samples = Predictive(model, guide=regression_guide, num_samples=50)(X, None)
    assert samples["mean"].shape == (50, len(X)) and type(samples["mean"]) is np.ndarray
    np.testing.assert_allclose(samples["mean"].mean(0), params["a_loc"] + params["b_loc"] * X, atol=0.1)


# ---------------------------------------------------------------- what Pyro accepts is accepted
def test_valid_pyro_programs_that_use_values_without_a_gradient_path():
    data = np.zeros(10)

    def guide(data):  # reads a param it does not use: Pyro gives it no gradient, and so do we
        minippl.param("spare", np.array(0.0))
        minippl.sample("z", dist.Normal(minippl.param("loc", np.array(0.3)), np.ones_like(data[0])))

    loss, grads, _ = Trace_ELBO().loss_and_grads(model, guide, data)
    assert set(grads) == {"loc"}

    def prior_only():  # a latent that only its prior and the guide score: the gradient is the KL's
        return minippl.sample("z", dist.Normal(0.0, 1.0))

    minippl.clear_param_store()
    guide_q = AutoNormal(prior_only)
    check_gradients(prior_only, guide_q)
    train(prior_only, guide_q, steps=1500, lr=0.05, average_last=1)
    assert abs(float(guide_q.median()["z"])) < 0.1  # q tends to the prior N(0, 1)

    def categorical_index(data):  # a sampled category indexes a Python list and a range
        k = minippl.sample("k", dist.Categorical(probs=np.array([0.2, 0.8])))
        scale = [0.5, 1.0][k] + len(range(k))
        minippl.sample("x", dist.Normal(0.0, scale), obs=data[0])

    def categorical_guide(data):
        minippl.sample("k", dist.Categorical(logits=minippl.param("logits", np.zeros(2))))

    check_gradients(categorical_index, categorical_guide, data)


def test_a_composite_module_computes_with_its_own_arrays_traced():
    class Scale(nn.Module):  # no backward: x * self.w is plain NumPy, recorded as in PyTorch
        def __init__(self):
            super().__init__()
            self.w = np.ones(1)
            self.unused_head = nn.Linear(1, 1, dtype=np.float64)  # an SS-VAE-style part not used here

        def forward(self, z):
            return z * self.w

    net = Scale()
    data = 3.0 + RNG.standard_normal(20)

    def net_model(x):
        minippl.module("net", net)
        z = minippl.sample("z", dist.Normal(0.0, 1.0))
        with minippl.plate("data", len(x)):
            minippl.sample("x", dist.Normal(net(z), 1.0), obs=x)

    def guide(x):
        minippl.sample("z", dist.Normal(minippl.param("loc", np.array(0.5)), 0.1))

    check_gradients(net_model, guide, data)
    _, grads, _ = Trace_ELBO().loss_and_grads(net_model, guide, data)
    assert "net$$$w" in grads and "net$$$unused_head.weight" not in grads
