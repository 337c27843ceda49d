"""Fail loudly: a table of wrong programs and inputs, each with the error it must raise.

Every row is a small wrong program; the test asserts the exception type and the key words of
its message (the site, the shapes or values involved, and the fix). Below the table: the
validation switch (SVI's NaN guard is tested in test_nan_guard.py).
"""
import os
import tempfile

import numpy as np
import pytest

import minippl
import minippl.distributions as dist
from minippl import handlers, validation
from minippl.distributions import constraints
from minippl.infer import SVI, Trace_ELBO
from minippl.infer.tape import LostGradientError
from minippl.optim import Adam
from minippl.params import ParamStore
from minippl.validation import NonFiniteError, ValidationError


class FakeCupyArray(np.ndarray):
    """Looks like a CuPy array to minippl (its class lives in a "cupy" module); no GPU needed."""


FakeCupyArray.__module__ = "cupy._core.core"


def on_gpu(array):
    return np.asarray(array).view(FakeCupyArray)


def get_trace(fn, *args):
    return handlers.trace(fn).get_trace(*args)


def one_step(model, guide, *args):
    return SVI(model, guide, Adam({"lr": 0.1}), Trace_ELBO()).step(*args)


def empty_guide(*args):
    pass


# ---------------------------------------------------------------- the wrong programs
def normal_negative_scale():
    dist.Normal(0.0, -1.0)


def normal_zero_scale_array():
    dist.Normal(np.zeros(3), np.array([1.0, 0.0, 2.0]))


def normal_nan_loc():
    dist.Normal(np.array([0.0, np.nan]), 1.0)


def bernoulli_probs_above_one():
    dist.Bernoulli(probs=np.array([0.2, 1.5]))


def bernoulli_nan_logits():
    dist.Bernoulli(logits=np.array([np.nan, 0.0]))


def uniform_low_not_below_high():
    dist.Uniform(np.array([0.0, 2.0]), np.array([1.0, 1.0]))


def delta_nan_log_density():
    dist.Delta(np.zeros(2), log_density=float("nan"))


def bad_argument_inside_a_sample_statement():
    def model():
        minippl.sample("z", dist.Normal(np.zeros(3), -np.ones(3)))

    get_trace(model)


def bad_argument_in_a_multi_line_sample_statement():
    def model():
        minippl.sample("a", dist.Normal(0.0, 1.0)); minippl.sample(  # noqa: E702
            "b",
            dist.Bernoulli(
                probs=np.array([0.5, -0.1]),
            ),
        )

    get_trace(model)


def cupy_and_numpy_arguments():
    dist.Normal(on_gpu(np.zeros(3)), np.ones(3))


def numpy_data_for_a_cupy_distribution():
    def model(x):
        with minippl.plate("data", 3):
            minippl.sample("x", dist.Normal(on_gpu(np.zeros(3)), on_gpu(np.ones(3))), obs=x)

    get_trace(model, np.zeros(3))


def nan_in_observed_data():
    def model(x):
        with minippl.plate("data", 3):
            minippl.sample("x", dist.Normal(0.0, 1.0), obs=x)

    get_trace(model, np.array([0.0, np.nan, 1.0]))


def raw_pixels_into_bernoulli():
    def model(x):
        with minippl.plate("data", 2):
            minippl.sample("x", dist.Bernoulli(probs=np.full((2, 4), 0.5, np.float32)).to_event(1), obs=x)

    get_trace(model, np.array([[0, 0, 128, 255]] * 2, np.float32))


def negative_bernoulli_observation():
    minippl.sample("x", dist.Bernoulli(probs=0.5), obs=np.array(-1.0))


def uniform_observation_outside_the_bounds():
    def model():
        minippl.sample("u", dist.Uniform(0.0, 1.0), obs=np.array(1.5))

    get_trace(model)


def conditioned_value_outside_the_support():
    def model():
        minippl.sample("p", dist.Uniform(0.0, 1.0))

    get_trace(handlers.condition(model, data={"p": np.array(2.0)}))


def guide_proposes_outside_the_model_support():
    def model():
        minippl.sample("p", dist.Uniform(0.0, 1.0))

    def guide():
        minippl.sample("p", dist.Normal(5.0, 1.0))

    one_step(model, guide)


def nan_placeholder_under_a_mask():
    def model(x):
        with minippl.plate("data", 3), handlers.mask(mask=~np.isnan(x)):
            minippl.sample("x", dist.Normal(0.0, 1.0), obs=x)

    get_trace(model, np.array([0.0, np.nan, 1.0]))


def observed_shape_that_does_not_broadcast():
    def model(x):
        with minippl.plate("data", 3):
            minippl.sample("x", dist.Normal(0.0, 1.0), obs=x)

    get_trace(model, np.zeros((3, 2)))


def observed_event_shape_mismatch():
    minippl.sample("x", dist.Normal(np.zeros(3), 1.0).to_event(1), obs=np.zeros(4))


def float64_data_into_a_float32_model():
    def model(x):
        with minippl.plate("data", 2):
            minippl.sample("x", dist.Bernoulli(probs=np.full((2, 3), 0.5, np.float32)).to_event(1), obs=x)

    get_trace(model, np.zeros((2, 3)))


def float64_constant_in_a_float32_model():
    def model(x):
        with minippl.plate("data", 2):
            z = minippl.sample("z", dist.Normal(np.zeros((2, 3)), np.ones((2, 3))).to_event(1))  # float64 prior
            minippl.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def guide(x):
        loc = minippl.param("loc", np.zeros((2, 3), np.float32))
        with minippl.plate("data", 2):
            minippl.sample("z", dist.Normal(loc, 1.0).to_event(1))

    one_step(model, guide, np.zeros((2, 3), np.float32))


def duplicate_site_names():
    def model():
        minippl.sample("z", dist.Normal(0.0, 1.0))
        minippl.sample("z", dist.Normal(0.0, 1.0))

    get_trace(model)


def latent_site_missing_from_the_guide():
    def model():
        minippl.sample("z", dist.Normal(0.0, 1.0))

    one_step(model, empty_guide)


def guide_site_missing_from_the_model():
    def guide():
        minippl.sample("w", dist.Normal(minippl.param("w_loc", np.array(0.0)), 1.0))

    one_step(empty_guide, guide)


def log_prob_shape_without_plate_or_to_event():
    def model(x):
        minippl.sample("x", dist.Normal(np.zeros(3), 1.0), obs=x)

    one_step(model, empty_guide, np.zeros(3))


def plate_size_not_matching_the_batch():
    with handlers.trace(), minippl.plate("data", 5):
        minippl.sample("x", dist.Normal(np.zeros(3), 1.0))


def plate_reused_with_another_size():
    def model():
        with minippl.plate("data", 3):
            minippl.sample("a", dist.Normal(0.0, 1.0))
        with minippl.plate("data", 4):
            minippl.sample("b", dist.Normal(0.0, 1.0))

    get_trace(model)


def plate_reused_at_another_dim():
    def model():
        with minippl.plate("data", 3):
            minippl.sample("a", dist.Normal(0.0, 1.0))
        with minippl.plate("data", 3, dim=-2):
            minippl.sample("b", dist.Normal(0.0, 1.0))

    get_trace(model)


def plate_nested_in_itself():
    with minippl.plate("data", 3), minippl.plate("data", 3):
        pass


def two_plates_asking_for_one_dim():
    with minippl.plate("a", 3, dim=-1), minippl.plate("b", 4, dim=-1):
        pass


def to_event_of_more_dims_than_the_batch():
    dist.Normal(np.zeros(3), 1.0).to_event(2)


def sample_without_a_distribution():
    minippl.sample("z", 1.0)


def list_as_a_distribution_argument():
    dist.Normal([0.0, 1.0], 1.0)


def list_as_observed_data():
    with minippl.plate("data", 2):
        minippl.sample("x", dist.Normal(0.0, 1.0), obs=[0.5, 1.5])


def param_initialised_outside_its_constraint():
    minippl.param("scale", np.array(-1.0), constraint=constraints.positive)


def param_read_before_it_has_a_value():
    minippl.param("never_set")


def log_prob_error_names_the_site_when_validation_is_off():
    def model(x):
        minippl.sample("x", dist.Normal(np.zeros(3), 1.0).to_event(1), obs=x)

    with minippl.validation_enabled(False):
        one_step(model, empty_guide, np.zeros(4))


def nan_data_with_validation_off():
    def model(x):
        minippl.sample("x", dist.Normal(0.0, 1.0), obs=x)

    with minippl.validation_enabled(False):
        one_step(model, empty_guide, np.array(np.nan))


def corrupt_param_store_file():
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "params.npz")
        with open(path, "wb") as file:
            file.write(b"\x80\x04 a pickle, not an npz")
        ParamStore().load(path)


def unknown_optimiser_hyperparameter():
    Adam({"learning_rate": 0.1})


# ---------------------------------------------------------------- escaping the tape (traced values)
def normal_model(x):
    z = minippl.sample("z", dist.Normal(0.0, 1.0))
    minippl.sample("x", dist.Normal(z, 1.0), obs=x)


def guide_with(convert):
    def guide(x):
        loc = minippl.param("loc", np.array(0.5))
        minippl.sample("z", dist.Normal(convert(loc), 1.0))
    return guide


def param_converted_with_asarray():
    one_step(normal_model, guide_with(np.asarray), np.array(1.0))


def param_converted_with_float():
    one_step(normal_model, guide_with(float), np.array(1.0))


def param_converted_with_item():
    one_step(normal_model, guide_with(lambda loc: loc.item()), np.array(1.0))


def param_converted_with_astype_int():
    one_step(normal_model, guide_with(lambda loc: loc.astype(np.int64)), np.array(1.0))


def value_computed_from_a_param_converted():
    one_step(normal_model, guide_with(lambda loc: np.asarray(2.0 * loc)), np.array(1.0))


def latent_converted_in_the_model():
    def model(x):
        z = minippl.sample("z", dist.Normal(0.0, 1.0))
        minippl.sample("x", dist.Normal(float(z), 1.0), obs=x)

    one_step(model, guide_with(lambda loc: loc), np.array(1.0))


def numpy_function_without_a_vjp():
    one_step(normal_model, guide_with(np.arctan), np.array(1.0))


def in_place_update_of_a_traced_value():
    def shift(loc):
        loc += 1.0
        return loc

    one_step(normal_model, guide_with(shift), np.array(1.0))


def item_assignment_into_a_traced_value():
    def guide(x):
        loc = minippl.param("loc", np.zeros(2))
        loc[0] = 1.0
        minippl.sample("z", dist.Normal(loc.sum(), 1.0))

    one_step(normal_model, guide, np.array(1.0))


class CopyingNormal(dist.Normal):
    """A user's distribution that copies its argument (so its gradient cannot reach the param)."""

    def __init__(self, loc, scale):
        super().__init__(np.array(loc, copy=True), scale)


def distribution_copying_its_argument():
    one_step(normal_model, guide_with(lambda loc: loc), np.array(1.0))  # fine
    one_step(normal_model, lambda x: minippl.sample("z", CopyingNormal(minippl.param("loc"), 1.0)), np.array(1.0))


def distribution_used_outside_a_sample_site():
    def guide(x):
        loc = minippl.param("loc", np.array(0.5))
        draw = dist.Normal(loc, 1.0).rsample()  # not a site: the draw is a plain array
        minippl.sample("z", dist.Delta(draw))

    one_step(normal_model, guide, np.array(1.0))


def traced_value_kept_from_an_earlier_step():
    kept = {}

    def guide(x):
        loc = kept.setdefault("loc", minippl.param("loc", np.array(0.5)))
        minippl.sample("z", dist.Normal(loc, 1.0))

    svi = SVI(normal_model, guide, Adam({"lr": 0.1}), Trace_ELBO())
    svi.step(np.array(1.0))
    svi.step(np.array(1.0))


def augmented_assignment_into_a_plain_array():
    def accumulate(loc):
        m = np.zeros(3)
        m += loc
        return m.sum()

    one_step(normal_model, guide_with(accumulate), np.array(1.0))


def converted_value_also_used_elsewhere():
    # the conversion raises where it happens, even though the value also reaches a record
    def model(x):
        a = minippl.sample("a", dist.Normal(0.0, 1.0))
        minippl.deterministic("twice_a", 2 * a)
        minippl.sample("x", dist.Normal(np.asarray(a), 1.0), obs=x)

    def guide(x):
        minippl.sample("a", dist.Normal(minippl.param("loc", np.array(0.5)), 1.0))

    one_step(model, guide, np.array(1.0))


def numpy_function_from_another_module():
    one_step(normal_model, guide_with(lambda loc: np.linalg.inv(loc[None, None])[0, 0]), np.array(1.0))


def invalid_distribution_used_directly_in_a_model():
    def model():
        draw = dist.Normal(0.0, -1.0).rsample()  # not through a sample statement: still refused
        minippl.sample("x", dist.Normal(draw, 1.0), obs=np.array(0.0))

    get_trace(model)


def observation_off_the_simplex():
    def model():
        minippl.sample("y", dist.Dirichlet(np.array([1.0, 2.0])), obs=np.array([0.2, 0.2]))

    get_trace(model)


TABLE = [
    # (wrong program, exception type, key words that must appear in the message)
    (normal_negative_scale, ValidationError, ["Normal", "scale must be > 0", "got -1.0", "constraints.positive"]),
    (normal_zero_scale_array, ValidationError, ["scale", "1 of 3 entries", "index (1,)", "shape (3,)", "softplus"]),
    (normal_nan_loc, NonFiniteError, ["Normal", "loc", "not NaN", "np.isnan"]),
    (bernoulli_probs_above_one, ValidationError, ["Bernoulli", "probs must be in [0, 1]", "1.5", "logits="]),
    (bernoulli_nan_logits, FloatingPointError, ["Bernoulli", "logits", "NaN"]),
    (uniform_low_not_below_high, ValidationError, ["Uniform", "low < high", "index (1,)", "swap the bounds"]),
    (delta_nan_log_density, NonFiniteError, ["Delta", "log_density", "NaN"]),
    (bad_argument_inside_a_sample_statement, ValidationError, ["sample site 'z'", "scale must be > 0", "3 of 3"]),
    (bad_argument_in_a_multi_line_sample_statement, ValidationError, ["sample site 'b'", "probs", "-0.1"]),
    (cupy_and_numpy_arguments, TypeError, ["Normal", "loc on the GPU (CuPy)", "scale on the CPU (NumPy)",
                                           "cupy.asarray"]),
    (numpy_data_for_a_cupy_distribution, TypeError, ["sample site 'x'", "observed value on the CPU", "one device"]),
    (nan_in_observed_data, NonFiniteError, ["sample site 'x'", "contains NaN", "1 of 3", "impute"]),
    (raw_pixels_into_bernoulli, ValidationError, ["sample site 'x'", "Bernoulli", "128.0", "pixels / 255",
                                                  "binarise"]),
    (negative_bernoulli_observation, ValidationError, ["sample site 'x'", "-1.0", "[0, 1]"]),
    (uniform_observation_outside_the_bounds, ValidationError, ["site 'u'", "[low, high)", "1.5", "-inf"]),
    (conditioned_value_outside_the_support, ValidationError, ["site 'p'", "observed value", "Uniform", "2.0"]),
    (guide_proposes_outside_the_model_support, ValidationError, ["step 1", "model site 'p'", "guide proposes",
                                                                 "No parameter was changed"]),
    (nan_placeholder_under_a_mask, NonFiniteError, ["site 'x'", "NaN", "Masked-out entries"]),
    (observed_shape_that_does_not_broadcast, ValidationError, ["site 'x'", "shape (3, 2)", "batch_shape (3,)",
                                                               ".to_event(n)"]),
    (observed_event_shape_mismatch, ValidationError, ["site 'x'", "shape (4,)", "event_shape (3,)"]),
    (float64_data_into_a_float32_model, TypeError, ["site 'x'", "observed value is float64", "probs is float32",
                                                    "astype(np.float32)"]),
    (float64_constant_in_a_float32_model, TypeError, ["step 1", "model site 'z'", "loc, scale are float64",
                                                      "value is float32", "dtype=x.dtype"]),
    (duplicate_site_names, ValueError, ["'z'", "used twice", "f'z_{i}'"]),
    (latent_site_missing_from_the_guide, ValueError, ["'z' is latent in the model", "add minippl.sample('z'",
                                                      "obs="]),
    (guide_site_missing_from_the_model, ValueError, ["guide samples 'w'", "model has no site"]),
    (log_prob_shape_without_plate_or_to_event, ValueError, ["sample site 'x'", "shape (3,)", ".to_event(1)",
                                                            "minippl.plate('name', 3, dim=-1)"]),
    (plate_size_not_matching_the_batch, ValueError, ["site 'x'", "batch shape (3,)", "plate 'data' of size 5",
                                                     ".to_event(1)"]),
    (plate_reused_with_another_size, ValueError, ["plate 'data'", "(4, 4)", "(3, 3)", "rename"]),
    (plate_reused_at_another_dim, ValueError, ["plate 'data'", "dim -1", "dim -2", "same dim="]),
    (plate_nested_in_itself, ValueError, ["plate 'data'", "inside itself", "another name"]),
    (two_plates_asking_for_one_dim, ValueError, ["plate 'b'", "dim -1", "plate 'a'", "dim=None"]),
    (to_event_of_more_dims_than_the_batch, ValueError, ["to_event(2)", "batch_shape (3,)", "at most 1"]),
    (sample_without_a_distribution, TypeError, ["sample site 'z'", "dist.Normal(loc, scale)", "float"]),
    (list_as_a_distribution_argument, TypeError, ["Normal", "loc", "list", "numpy.asarray"]),
    (list_as_observed_data, TypeError, ["sample site 'x'", "observed value", "list", "numpy.asarray"]),
    (param_initialised_outside_its_constraint, ValueError, ["param 'scale'", "positive", "CONSTRAINED"]),
    (param_read_before_it_has_a_value, KeyError, ["never_set", "no initial value", "minippl.param('never_set'"]),
    (log_prob_error_names_the_site_when_validation_is_off, ValueError, ["step 1", "model site 'x'",
                                                                        "log_prob failed", "shape (4,)",
                                                                        "event_shape (3,)"]),
    (nan_data_with_validation_off, FloatingPointError, ["step 1", "loss is nan", "model site 'x'",
                                                        "No parameter was changed"]),
    (corrupt_param_store_file, ValueError, ["params.npz", "not an .npz"]),
    (unknown_optimiser_hyperparameter, ValueError, ["Adam", "learning_rate", "'lr'"]),
    (param_converted_with_asarray, LostGradientError, ["numpy.asarray", "param 'loc'", "gradient would be lost",
                                                       "compute with the value itself", "print(x)"]),
    (param_converted_with_float, LostGradientError, ["param 'loc'", "float()"]),
    (param_converted_with_item, LostGradientError, ["param 'loc'", ".item()"]),
    (param_converted_with_astype_int, LostGradientError, ["param 'loc'", ".astype(int64)"]),
    (value_computed_from_a_param_converted, LostGradientError, ["computed from param 'loc'", "numpy.asarray"]),
    (augmented_assignment_into_a_plain_array, TypeError, ["augmented assignment into a plain array",
                                                          "m = m + x"]),
    (converted_value_also_used_elsewhere, LostGradientError, ["numpy.asarray", "sample site 'a'"]),
    (latent_converted_in_the_model, LostGradientError, ["float()", "sample site 'z'", "gradient would be lost"]),
    (numpy_function_without_a_vjp, TypeError, ["numpy.arctan", "no hand-written derivative", "exp", "minippl.nn layer"]),
    (in_place_update_of_a_traced_value, TypeError, ["augmented assignment", "computed from param 'loc'",
                                                    "in place", "x = x + 1"]),
    (item_assignment_into_a_traced_value, TypeError, ["item assignment", "in place", "np.where"]),
    (distribution_copying_its_argument, LostGradientError, ["param 'loc'", "numpy.asarray / numpy.array"]),
    (distribution_used_outside_a_sample_site, LostGradientError, ["param 'loc'", "passed to Normal",
                                                                  "no sample site used", "minippl.sample("]),
    (traced_value_kept_from_an_earlier_step, RuntimeError, ["param 'loc'", "earlier run", "read the param"]),
    (numpy_function_from_another_module, TypeError, ["numpy.linalg.inv", "no hand-written derivative"]),
    (invalid_distribution_used_directly_in_a_model, ValidationError, ["Normal", "scale must be > 0"]),
    (observation_off_the_simplex, ValidationError, ["sample site 'y'", "simplex", "1 of 1 events",
                                                    "[0.2, 0.2]"]),
]


@pytest.mark.parametrize("program, error, words", TABLE, ids=[row[0].__name__ for row in TABLE])
def test_wrong_program_raises_a_clear_error(program, error, words):
    with pytest.raises(error) as caught:
        program()
    message = str(caught.value)
    missing = [word for word in words if word not in message]
    assert not missing, f"{missing} not in the message: {message}"


def test_the_table_is_long_enough():
    assert len(TABLE) >= 25 and len({row[0] for row in TABLE}) == len(TABLE)


# ---------------------------------------------------------------- the switch
def test_validation_can_be_turned_off_and_on():
    assert minippl.is_validation_enabled() and minippl.validation_enabled()
    minippl.enable_validation(False)
    assert not minippl.is_validation_enabled() and not minippl.validation_enabled()
    dist.Normal(0.0, -1.0)  # not checked
    minippl.sample("x", dist.Bernoulli(0.5), obs=np.array(7.0))
    minippl.enable_validation(True)
    with pytest.raises(ValidationError):
        dist.Normal(0.0, -1.0)


def test_validation_enabled_is_a_context_manager_and_validate_args_overrides_it():
    with minippl.validation_enabled(False):
        assert not minippl.is_validation_enabled()
        dist.Normal(0.0, -1.0)
        with pytest.raises(ValidationError, match="scale"):
            dist.Normal(0.0, -1.0, validate_args=True)
        with minippl.validation_enabled():
            assert minippl.is_validation_enabled()
    assert minippl.is_validation_enabled()
    dist.Normal(0.0, -1.0, validate_args=False)
    minippl.sample("x", dist.Normal(0.0, 1.0, validate_args=False), obs=np.array(np.nan))


def test_grey_values_in_the_unit_interval_are_accepted():
    x = np.array([[0.0, 0.25, 0.5, 1.0]], np.float32)
    with minippl.plate("data", 1):
        assert minippl.sample("x", dist.Bernoulli(np.full((1, 4), 0.5, np.float32)).to_event(1), obs=x) is x


def test_check_gradients_may_mix_float32_constants_with_float64_params():
    def model(x):
        z = minippl.sample("z", dist.Normal(np.zeros(2, np.float32), 1.0).to_event(1))
        minippl.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def guide(x):
        minippl.sample("z", dist.Normal(minippl.param("loc", np.zeros(2, np.float32)), 1.0).to_event(1))

    from minippl.infer import check_gradients

    check_gradients(model, guide, np.ones(2, np.float32))
    with pytest.raises(TypeError, match="float64"):  # outside the check, the mix is refused
        one_step(model, guide, np.ones(2))


def test_the_cheap_reductions_agree_with_the_elementwise_check():
    rng = np.random.default_rng(0)
    for constraint in [constraints.real, constraints.positive, constraints.unit_interval,
                       constraints.greater_than(-1.0), constraints.interval(-2.0, 3.0)]:
        for _ in range(50):
            x = rng.normal(0, 2, size=rng.integers(1, 6, size=2))
            x[rng.random(x.shape) < 0.1] = rng.choice([np.nan, np.inf, -np.inf, 0.0, 1.0])
            assert validation.violates(constraint, x) == (not constraint.check(x).all())
    assert validation.all_finite(np.full(4, 1e30, np.float32))  # <x, x> overflows; still finite
    assert not validation.all_finite(np.array([1.0, np.inf]))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # exp overflows and inf / inf is NaN: the point
def test_observed_data_outside_the_support_is_said_before_the_nan_arguments_it_caused():
    # raw 0-255 pixels overflow exp into NaN probs at the site that observes them: the data is the cause
    x = np.random.default_rng(0).integers(0, 256, (8, 20)).astype(float)

    def model(x):
        w = minippl.param("w", np.ones(20))
        with minippl.plate("data", 8):
            z = 1000.0 * x * w  # exp overflows: the probs are inf / inf = NaN
            minippl.sample("obs", dist.Bernoulli(probs=np.exp(z) / np.exp(z)).to_event(1), obs=x)

    with pytest.raises(validation.ValidationError, match=r"site 'obs': observed value is outside.*pixels / 255"):
        SVI(model, lambda x: None, minippl.optim.Adam({"lr": 0.1}), Trace_ELBO()).step(x)
    with pytest.raises(validation.ValidationError, match=r"site 'obs'.*probs"):  # good data: the arguments' error
        SVI(model, lambda x: None, minippl.optim.Adam({"lr": 0.1}), Trace_ELBO()).step(np.ones((8, 20)))
