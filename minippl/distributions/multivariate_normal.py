"""MultivariateNormal: a correlated Gaussian, through its Cholesky factor, with matrix gradients.

Teaches: a distribution whose event is a vector (event_shape (d,)) and whose argument is a
matrix. Everything is computed from the lower Cholesky factor L of the covariance (Sigma = L L^T):
a draw is loc + L eps, the log-density needs one triangular solve, and every derivative with
respect to L is written by hand next to its forward, as are the Cholesky decomposition's own
(Murray 2016) and the matrix inverse's, for a covariance or precision matrix. Then
LowRankMultivariateNormal (covariance W W^T + diag(D)): nothing d x d is factored, Woodbury's
identity and the determinant lemma work through an r x r matrix. Builds on distribution.py,
constraints.py (lower_cholesky) and normal.py (its constant).
"""
import numpy as np

from .. import backend, validation
from ..backend import array_module, broadcast_shapes, grad_like, promote, shape_of
from . import constraints
from .distribution import Distribution
from .normal import _HALF_LOG_2PI
_MATRIX_ARGS = ("covariance_matrix", "precision_matrix", "scale_tril")


# ---------------------------------------------------------------- small matrix helpers
def _mT(a):
    return array_module(a).swapaxes(a, -1, -2)


def _diag(a):
    return array_module(a).diagonal(a, axis1=-2, axis2=-1)


def _diag_embed(v):
    xp = array_module(v)
    return v[..., None] * xp.eye(v.shape[-1], dtype=v.dtype)


def _sym(a):
    return 0.5 * (a + _mT(a))


def solve_tril(L, b, transpose=False):
    """L^{-1} b (or L^{-T} b), L (..., d, d) lower-triangular (only its lower triangle is read),
    b (..., d, k); batch dims broadcast.

    The system is triangular (forward or back substitution would do, O(d^2) per column); it is
    handed to the array module's stacked ``linalg.solve`` (an LU, O(d^3)), which loops over a
    batch in C: SciPy's solve_triangular loops over one in Python, and its threaded LAPACK call
    took milliseconds per 2x2 system on a busy 2-core machine.
    """
    xp = array_module(L, b)
    L = xp.tril(L)
    return xp.linalg.solve(_mT(L) if transpose else L, b)


def _cholesky(matrix, name, owner="MultivariateNormal", fix="pass a symmetric positive-definite matrix, or "
              "scale_tril= (e.g. a param with constraint=constraints.lower_cholesky)"):
    try:
        return array_module(matrix).linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        raise ValueError(f"{owner}: {name} is not positive definite (its Cholesky decomposition failed); "
                         f"{fix}") from None


def cholesky_vjp(L, grad_L):
    """d <grad_L, chol(Sigma)> / d Sigma for Sigma = L L^T read as a symmetric matrix (Murray 2016).

    With Phi(A) = the lower triangle of A with its diagonal halved: dL = L Phi(L^{-1} dSigma L^{-T}),
    whose adjoint is Sigma_bar = L^{-T} Phi(L^T L_bar) L^{-1}, symmetrised ((S + S^T) / 2: the
    gradient of chol((C + C^T) / 2), which is how MultivariateNormal reads a covariance C).
    Only the lower triangle of grad_L counts (L has no upper triangle).
    """
    xp = array_module(L)
    P = xp.tril(_mT(L) @ xp.tril(grad_L))
    P = P - 0.5 * _diag_embed(_diag(P))  # Phi(L^T L_bar)
    A = solve_tril(L, P, transpose=True)  # L^{-T} Phi
    return _sym(_mT(solve_tril(L, _mT(A), transpose=True)))  # (L^{-T} Phi L^{-1}), symmetrised


class MultivariateNormal(Distribution):
    """MultivariateNormal(loc, covariance_matrix=None, precision_matrix=None, scale_tril=None).

    torch's and Pyro's signature: give exactly one of the three matrices. Density
    log N(x | mu, Sigma) = -|L^{-1}(x - mu)|^2 / 2 - sum_i log L_ii - (d/2) log 2 pi, with L the
    lower Cholesky factor of Sigma; drawn as x = mu + L eps, eps ~ N(0, I_d). loc has shape
    (..., d), the matrix (..., d, d); their batch dims broadcast, event_shape is (d,).

    Gradients reach ``arg_names``: ``loc`` and the matrix that was given, stored as given.
    ``scale_tril`` (the parametrisation to learn: a param with
    ``constraint=constraints.lower_cholesky``) is read through its lower triangle only, so its
    gradient is lower-triangular. A ``covariance_matrix`` C is read as (C + C^T) / 2 and factored
    by Cholesky; its gradient goes through the Cholesky decomposition's VJP (Murray 2016, see
    :func:`cholesky_vjp`) and is symmetric. A ``precision_matrix`` P is inverted (Sigma = P^{-1},
    from P's own Cholesky factor) and then factored; its gradient is -Sigma Sigma_bar Sigma. The
    other two matrices are available as properties.

    >>> d = MultivariateNormal(np.zeros(2), covariance_matrix=np.array([[4.0, 2.0], [2.0, 2.0]]))
    >>> d.scale_tril, d.arg_names
    (array([[2., 0.],
           [1., 1.]]), ('loc', 'covariance_matrix'))
    >>> float(d.log_prob(np.array([2.0, 1.0])))  # w = L^{-1} x = (1, 0): -1/2 - log 2 - log 2 pi
    -3.0310242469692907
    """

    has_rsample = True
    arg_constraints = {"loc": constraints.real, "scale_tril": constraints.lower_cholesky}
    support = constraints.real

    def __init__(self, loc, covariance_matrix=None, precision_matrix=None, scale_tril=None, validate_args=None):
        given = {n: m for n, m in zip(_MATRIX_ARGS, (covariance_matrix, precision_matrix, scale_tril)) if m is not None}
        if len(given) != 1:
            raise ValueError(f"MultivariateNormal takes exactly one of covariance_matrix=, precision_matrix= or "
                             f"scale_tril=, got {', '.join(sorted(given)) or 'none'}")
        (name, matrix), = given.items()
        validation.check_types("MultivariateNormal", loc=loc, **{name: matrix})
        loc_shape, m_shape = shape_of(loc), shape_of(matrix)
        if len(m_shape) < 2 or m_shape[-1] != m_shape[-2] or len(loc_shape) < 1 or loc_shape[-1] != m_shape[-1]:
            raise ValueError(f"MultivariateNormal: loc must have shape (..., d) and {name} (..., d, d), "
                             f"got loc {loc_shape} and {name} {m_shape}")
        try:
            batch_shape = broadcast_shapes(loc_shape[:-1], m_shape[:-2])
        except ValueError:
            raise ValueError(f"MultivariateNormal: the batch dims of loc {loc_shape[:-1]} and of {name} "
                             f"{m_shape[:-2]} do not broadcast together") from None
        self.loc = loc  # stored as given: the tape finds gradients by identity
        self._matrix = matrix  # as given, read back through the property of its name
        self.arg_names = ("loc", name)
        xp, _, (m,) = promote(self._matrix)  # the plain array, also when a traced value was given
        if name == "scale_tril":
            self._L = xp.tril(m)  # only the lower triangle is read
        elif name == "covariance_matrix":
            self._L = _cholesky(_sym(m), name)
        else:  # Sigma = P^{-1} = Lp^{-T} Lp^{-1}, with P = Lp Lp^T
            lp_inv = solve_tril(_cholesky(_sym(m), name), xp.eye(m.shape[-1], dtype=m.dtype))
            self._cov = _mT(lp_inv) @ lp_inv
            self._L = _cholesky(self._cov, name)
        super().__init__(batch_shape, loc_shape[-1:], validate_args=validate_args)

    def _check_args(self):
        validation.check_devices("MultivariateNormal", self.arg_arrays())
        validation.check_arg("MultivariateNormal", "loc", self.loc, constraints.real)
        if "scale_tril" not in self.arg_names or not validation.violates(constraints.lower_cholesky, self._matrix):
            return
        m = self._matrix  # the offending entries: above the diagonal, a diagonal <= 0, NaN
        xp = array_module(m)
        bad = (xp.tril(m) != m) | ((_diag_embed(_diag(m)) <= 0) & (xp.eye(m.shape[-1]) > 0)) | xp.isnan(m)
        summary, has_nan = validation.describe_bad(m, bad)
        validation.raise_site_error(
            f"MultivariateNormal: scale_tril must be lower-triangular with a positive diagonal, but {summary} "
            f"are not. Fix: use a param with constraint=constraints.lower_cholesky, or "
            f"np.linalg.cholesky(covariance) (or pass covariance_matrix=).",
            validation.NonFiniteError if has_nan else validation.ValidationError)

    # ---------------------------------------------------------------- the three matrices
    def _given(self, name):
        return self._matrix if self.arg_names[1] == name else None

    @property
    def scale_tril(self):
        given = self._given("scale_tril")
        return given if given is not None else self._L

    @property
    def covariance_matrix(self):
        given = self._given("covariance_matrix")
        return given if given is not None else self._L @ _mT(self._L)

    @property
    def precision_matrix(self):
        given = self._given("precision_matrix")
        if given is not None:
            return given
        L_inv = solve_tril(self._L, array_module(self._L).eye(self._L.shape[-1], dtype=self._L.dtype))
        return _mT(L_inv) @ L_inv  # Sigma^{-1} = L^{-T} L^{-1}

    @property
    def mean(self):
        return array_module(self.loc).broadcast_to(self.loc, self.batch_shape + self.event_shape)

    @property
    def variance(self):
        # diag(L L^T)_i = sum_j L_ij^2
        v = (self._L * self._L).sum(-1)
        return array_module(v).broadcast_to(v, self.batch_shape + self.event_shape)

    def matrix_vjp(self, grad_scale_tril):
        """{matrix argument's name: its gradient}, from the gradient of the loss w.r.t. L (any
        broadcast shape): lower triangle kept, then through the Cholesky (and inverse) VJPs."""
        xp = array_module(grad_scale_tril)
        name = self.arg_names[1]
        grad_L = xp.tril(backend.sum_to_shape(xp.asarray(grad_scale_tril), self._L.shape))
        if name == "scale_tril":
            return {name: grad_like(grad_L, self._matrix)}
        grad_cov = cholesky_vjp(self._L, grad_L)
        if name == "covariance_matrix":
            return {name: grad_like(grad_cov, self._matrix)}
        # Sigma = P^{-1}: dSigma = -Sigma dP Sigma, so P_bar = -Sigma Sigma_bar Sigma
        return {name: grad_like(-self._cov @ grad_cov @ self._cov, self._matrix)}

    # ---------------------------------------------------------------- sampling
    def rsample_with_noise(self, sample_shape=(), rng=None):
        rng = backend.global_rng() if rng is None else rng
        dtype = backend.float_dtype(self.loc, self._L)
        eps = backend.standard_normal(rng, self.shape(sample_shape), dtype, like=self._like())
        return self.loc + (self._L @ eps[..., None])[..., 0], eps  # x = mu + L eps

    def rsample_vjp(self, noise, grad_value, wrt):
        grads = {}
        for name in self._check_wrt(wrt, with_value=False):
            if name == "loc":  # d/dmu (mu + L eps) = I
                grads["loc"] = grad_like(grad_value, self.loc, copy=True)
            else:  # d <g, L eps> / dL_ij = g_i eps_j, lower triangle: tril(g eps^T)
                grads.update(self.matrix_vjp(grad_value[..., :, None] * noise[..., None, :]))
        return grads

    # ---------------------------------------------------------------- log-density
    def _whiten(self, value):
        """(xp, L, w = L^{-1} (x - mu)): the triangular solve every term needs."""
        self._check_event_shape(value)
        xp, _, (x, loc, L) = promote(value, self.loc, self._L)
        return xp, L, solve_tril(L, (x - loc)[..., None])[..., 0]

    def log_prob(self, value):
        xp, L, w = self._whiten(value)
        # log N(x | mu, L L^T) = -|w|^2 / 2 - sum_i log L_ii - (d/2) log 2 pi,  w = L^{-1}(x - mu)
        d = L.shape[-1]
        log_det = xp.log(_diag(L)).sum(-1)
        return self._batch_result(-0.5 * (w * w).sum(-1) - log_det - d * _HALF_LOG_2PI, value)

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        wrt = self._check_wrt(wrt)
        xp, L, w = self._whiten(value)
        g = promote(grad_log_prob, L)[2][0]
        v = solve_tril(L, w[..., None], transpose=True)[..., 0]  # L^{-T} w = Sigma^{-1} (x - mu)
        grads = {}
        if "value" in wrt:  # d/dx = -L^{-T} w
            grads["value"] = grad_like(-g[..., None] * v, value)
        if "loc" in wrt:  # d/dmu = L^{-T} w
            grads["loc"] = grad_like(g[..., None] * v, self.loc)
        if self.arg_names[1] in wrt:
            # dw = -L^{-1} dL w, so d(-|w|^2/2) = w^T L^{-1} dL w = <L^{-T} w w^T, dL>, and
            # d(-sum log L_ii) = <-diag(1/L_ii), dL>: L_bar = tril(L^{-T} w w^T - diag(1/L_ii))
            grad_L = g[..., None, None] * (v[..., :, None] * w[..., None, :] - _diag_embed(1 / _diag(L)))
            grads.update(self.matrix_vjp(grad_L))
        return grads


class LowRankMultivariateNormal(Distribution):
    """LowRankMultivariateNormal(loc, cov_factor, cov_diag): covariance Sigma = W W^T + diag(D).

    torch's and Pyro's: loc (..., d), cov_factor W (..., d, r), cov_diag D (..., d) positive, batch
    dims broadcast, event_shape (d,). Nothing d x d is factored: with the r x r capacitance
    C = I + W^T D^{-1} W, Woodbury gives Sigma^{-1} = D^{-1} - D^{-1} W C^{-1} W^T D^{-1} and the
    determinant lemma log det Sigma = log det C + sum_i log D_i. Drawn as
    x = mu + W eps_W + sqrt(D) eps_D (the noise holds eps_W and eps_D side by side, r + d numbers).

    >>> d = LowRankMultivariateNormal(np.zeros(2), np.array([[1.0], [1.0]]), np.ones(2))
    >>> d.covariance_matrix
    array([[2., 1.],
           [1., 2.]])
    """

    has_rsample = True
    arg_names = ("loc", "cov_factor", "cov_diag")
    arg_constraints = {"loc": constraints.real, "cov_factor": constraints.real, "cov_diag": constraints.positive}
    support = constraints.real

    def __init__(self, loc, cov_factor, cov_diag, validate_args=None):
        validation.check_types("LowRankMultivariateNormal", loc=loc, cov_factor=cov_factor, cov_diag=cov_diag)
        loc_shape, w_shape, d_shape = shape_of(loc), shape_of(cov_factor), shape_of(cov_diag)
        if not (len(loc_shape) >= 1 and len(w_shape) >= 2 and len(d_shape) >= 1
                and loc_shape[-1] == w_shape[-2] == d_shape[-1]):
            raise ValueError(f"LowRankMultivariateNormal: loc must have shape (..., d), cov_factor (..., d, r) and "
                             f"cov_diag (..., d), got {loc_shape}, {w_shape} and {d_shape}")
        try:
            batch_shape = broadcast_shapes(loc_shape[:-1], w_shape[:-2], d_shape[:-1])
        except ValueError:
            raise ValueError(f"LowRankMultivariateNormal: the batch dims {loc_shape[:-1]}, {w_shape[:-2]} and "
                             f"{d_shape[:-1]} of loc, cov_factor and cov_diag do not broadcast together") from None
        self.loc, self.cov_factor, self.cov_diag = loc, cov_factor, cov_diag  # as given
        super().__init__(batch_shape, loc_shape[-1:], validate_args=validate_args)

    def _parts(self):
        """(xp, W, D, A = D^{-1} W, C^{-1}) with C = I + W^T D^{-1} W the r x r capacitance."""
        xp, _, (W, D) = promote(self.cov_factor, self.cov_diag)
        A = W / D[..., None]
        C = xp.eye(W.shape[-1], dtype=W.dtype) + _mT(W) @ A
        return xp, W, D, A, C

    @property
    def covariance_matrix(self):
        xp, W, D, _, _ = self._parts()
        return W @ _mT(W) + _diag_embed(xp.broadcast_to(D, W.shape[:-1]))

    @property
    def precision_matrix(self):
        xp, W, D, A, C = self._parts()  # Woodbury
        return _diag_embed(xp.broadcast_to(1 / D, W.shape[:-1])) - A @ xp.linalg.solve(C, _mT(A))

    @property
    def scale_tril(self):
        return _cholesky(self.covariance_matrix, "the covariance W W^T + diag(cov_diag)", "LowRankMultivariateNormal",
                         "cov_diag must be positive (validate_args=True checks it), e.g. a param with "
                         "constraint=constraints.positive")

    @property
    def mean(self):
        return array_module(self.loc).broadcast_to(self.loc, self.batch_shape + self.event_shape)

    @property
    def variance(self):
        xp, W, D, _, _ = self._parts()
        return xp.broadcast_to((W * W).sum(-1) + D, self.batch_shape + self.event_shape)

    def rsample_with_noise(self, sample_shape=(), rng=None):
        rng = backend.global_rng() if rng is None else rng
        xp, W, D, _, _ = self._parts()
        r = W.shape[-1]
        dtype = backend.float_dtype(self.loc, W, D)
        eps = backend.standard_normal(rng, self.shape(sample_shape)[:-1] + (r + self.event_shape[0],), dtype,
                                      like=self._like())
        # x = mu + W eps_W + sqrt(D) eps_D
        return self.loc + (W @ eps[..., :r, None])[..., 0] + xp.sqrt(D) * eps[..., r:], eps

    def rsample_vjp(self, noise, grad_value, wrt):
        xp, W, D, _, _ = self._parts()
        r, g, grads = W.shape[-1], grad_value, {}
        for name in self._check_wrt(wrt, with_value=False):
            if name == "loc":  # d/dmu = I
                grads["loc"] = grad_like(g, self.loc, copy=True)
            elif name == "cov_factor":  # d <g, W eps_W> / dW = g eps_W^T
                grads["cov_factor"] = grad_like(g[..., :, None] * noise[..., None, :r], self.cov_factor)
            else:  # d/dD_i sqrt(D_i) eps_i = eps_i / (2 sqrt(D_i))
                grads["cov_diag"] = grad_like(g * noise[..., r:] / (2 * xp.sqrt(D)), self.cov_diag)
        return grads

    def _residual(self, value):
        """(xp, W, D, A, C, v = Sigma^{-1} (x - mu), r^T Sigma^{-1} r): two solves with the capacitance."""
        self._check_event_shape(value)
        xp, W, D, A, C = self._parts()
        _, _, (x, loc) = promote(value, self.loc)
        res = x - loc
        # Sigma^{-1} r = D^{-1} r - A C^{-1} A^T r
        v = res / D - (A @ xp.linalg.solve(C, (_mT(A) @ res[..., None])))[..., 0]
        return xp, W, D, A, C, v, (res * v).sum(-1)

    def log_prob(self, value):
        xp, W, D, A, C, v, mahalanobis = self._residual(value)
        # log N = -(r^T Sigma^{-1} r) / 2 - (log det C + sum_i log D_i) / 2 - (d/2) log 2 pi
        log_det = xp.linalg.slogdet(C)[1] + xp.log(D).sum(-1)
        return self._batch_result(-0.5 * (mahalanobis + log_det) - D.shape[-1] * _HALF_LOG_2PI, value)

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        wrt = self._check_wrt(wrt)
        xp, W, D, A, C, v, _ = self._residual(value)
        g = promote(grad_log_prob, W)[2][0]
        grads = {}
        if "value" in wrt:  # d/dx = -Sigma^{-1} r
            grads["value"] = grad_like(-g[..., None] * v, value)
        if "loc" in wrt:  # d/dmu = Sigma^{-1} r
            grads["loc"] = grad_like(g[..., None] * v, self.loc)
        if "cov_factor" in wrt or "cov_diag" in wrt:
            # d log N / dSigma = (v v^T - Sigma^{-1}) / 2 (symmetric); Sigma = W W^T + diag(D), so
            # d/dW = (v v^T - Sigma^{-1}) W = v (v^T W) - A C^{-1}   (Sigma^{-1} W = A C^{-1}), and
            # d/dD_i = (v_i^2 - (Sigma^{-1})_ii) / 2,  (Sigma^{-1})_ii = 1 / D_i - sum_j (A C^{-1})_ij A_ij
            a_c = _mT(xp.linalg.solve(C, _mT(A)))  # A C^{-1} (C symmetric)
            if "cov_factor" in wrt:
                vw = (v[..., None, :] @ W)[..., 0, :]  # v^T W, one r-vector per value
                grad_w = g[..., None, None] * (v[..., :, None] * vw[..., None, :] - a_c)
                grads["cov_factor"] = grad_like(grad_w, self.cov_factor)
            if "cov_diag" in wrt:
                inv_diag = 1 / D - (a_c * A).sum(-1)
                grads["cov_diag"] = grad_like(0.5 * g[..., None] * (v * v - inv_diag), self.cov_diag)
        return grads
