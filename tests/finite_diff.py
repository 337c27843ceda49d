"""Float64 finite differences: the oracle every hand-written derivative is tested against.

A VJP ``vjp(u) = u^T J`` is checked without forming the Jacobian: pick a random
cotangent ``u`` and a random direction ``d``; then ``<vjp(u), d>`` must equal the
directional derivative of the scalar ``s(x) = <u, f(x)>`` along ``d``, which we
estimate by a fourth-order central difference (Richardson: error O(h^4)).
"""
import numpy as np

RTOL = 1e-6


def directional_derivative(scalar_fn, step=1e-4):
    """d/dt scalar_fn(t) at t = 0 by the five-point stencil."""
    f = scalar_fn
    return (8 * (f(step) - f(-step)) - (f(2 * step) - f(-2 * step))) / (12 * step)


def relative_error(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-30)


def check_vjp(fn, inputs, vjp, rng=None, rtol=RTOL, trials=3):
    """Assert that ``vjp`` is the vector-Jacobian product of ``fn``.

    fn:     callable(**inputs) -> array (float64)
    inputs: dict name -> float64 array (or float) at which to check
    vjp:    callable(cotangent, **inputs) -> dict name -> gradient, for a subset
            of the inputs (names missing from the dict are not checked)
    """
    rng = np.random.default_rng(0) if rng is None else rng
    inputs = {k: np.asarray(v, dtype=np.float64) for k, v in inputs.items()}
    out = np.asarray(fn(**inputs))
    assert out.dtype == np.float64, f"check in float64, got {out.dtype}"
    for _ in range(trials):
        cotangent = rng.standard_normal(out.shape)
        grads = vjp(cotangent, **inputs)
        assert grads, "vjp returned no gradients"
        for name, grad in grads.items():
            x = inputs[name]
            grad = np.asarray(grad)
            assert grad.shape == x.shape, f"d/d{name}: shape {grad.shape}, expected {x.shape}"
            direction = rng.standard_normal(x.shape)

            def along(t, name=name, x=x, direction=direction):
                moved = dict(inputs, **{name: x + t * direction})
                return float(np.sum(cotangent * fn(**moved)))

            numeric = directional_derivative(along)
            analytic = float(np.sum(grad * direction))
            err = relative_error(analytic, numeric)
            assert err < rtol, f"d/d{name}: analytic {analytic!r} vs finite difference {numeric!r} (rel err {err:.2e})"
