"""The Bayesian examples: their gradients (check_gradients on each model and guide), their
command lines and pictures, and the issue's acceptance numbers: posterior summaries against
the truth and the exact conjugate posterior (regression), and the predictive band of the BNN
(at least twice as wide in the gap as on the data, covering at least 80% of fresh points)."""
import numpy as np
import pytest

import bayesian_regression
import bnn
import minippl
from minippl.infer import check_gradients
from minippl.infer.autoguide import AutoNormal, init_to_sample

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_regression_model_and_guide_pass_check_gradients():
    minippl.set_rng_seed(0)
    x, y = bayesian_regression.make_data(np.random.default_rng(0), 20)
    model = bayesian_regression.BayesianRegression(x.shape[1])
    check_gradients(model, AutoNormal(model), x, y)
    known_noise = bayesian_regression.BayesianRegression(x.shape[1], noise=0.5)
    check_gradients(known_noise, AutoNormal(known_noise), x, y)


def test_bnn_model_and_guide_pass_check_gradients():
    minippl.set_rng_seed(0)
    x, y = bnn.make_data(np.random.default_rng(0), 12)
    model = bnn.BNN()
    check_gradients(model, AutoNormal(model, init_loc_fn=init_to_sample), x, y)


def test_regression_recovers_the_truth_and_matches_the_exact_posterior(tmp_path, capsys):
    result = bayesian_regression.main(["--out", str(tmp_path)])
    assert all(result["inside"].values()), result["inside"]  # every truth inside its 90% interval
    assert result["mean_error"] < 0.05  # AutoNormal means vs the exact Gaussian posterior (noise known)
    assert result["sd_error"] < 0.15  # its sds vs the exact marginal sds
    for name in ("regression.png", "regression_loss.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_SIGNATURE
    assert "inside" in capsys.readouterr().out


def test_exact_posterior_formula_on_a_tiny_case():
    # one weight, x = [1, -1], y = [1, 1], noise 1: A = [[1, 1], [-1, 1]], A^T A = 2 I, A^T y = [0, 2]
    x, y = np.array([[1.0], [-1.0]]), np.array([1.0, 1.0])
    exact = bayesian_regression.exact_posterior(x, y, 1.0)
    weight_precision, bias_precision = 1 + 2, 1 / 100 + 2
    np.testing.assert_allclose(exact["linear.weight"][0], [[0.0]], atol=1e-12)
    np.testing.assert_allclose(exact["linear.bias"][0], [2 / bias_precision])
    np.testing.assert_allclose(exact["linear.weight"][1], [[weight_precision ** -0.5]])
    np.testing.assert_allclose(exact["linear.bias"][2], [bias_precision ** -0.5])


def test_bnn_band_widens_in_the_gap_and_covers_fresh_points(tmp_path):
    metrics = bnn.main(["--num-steps", "2000", "--out", str(tmp_path)])
    assert metrics["gap_ratio"] >= 2.0, metrics
    assert metrics["coverage"] >= 0.8, metrics
    assert metrics["far_ratio"] > 1.2, metrics  # and it opens away from the data
    for name in ("bnn.png", "bnn_loss.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_SIGNATURE


def test_command_lines_take_few_steps_and_reject_bad_arguments(tmp_path):
    bnn.main(["-n", "5", "--seed", "3", "--num-points", "10", "--out", str(tmp_path / "b")])
    assert (tmp_path / "b" / "bnn.png").exists()
    with pytest.raises(SystemExit):
        bayesian_regression.parse_args(["--num-steps", "0"])
    with pytest.raises(SystemExit):
        bnn.parse_args(["--num-points", "1"])
