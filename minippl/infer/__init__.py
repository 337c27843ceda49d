"""Inference: the ELBO read backwards (tape.py, elbo.py, mean_field.py), SVI, and the gradient check."""
from .check import GradientCheckError, check_gradients
from .elbo import Trace_ELBO
from .mean_field import TraceMeanField_ELBO
from .svi import SVI

__all__ = ["GradientCheckError", "SVI", "Trace_ELBO", "TraceMeanField_ELBO", "check_gradients"]
