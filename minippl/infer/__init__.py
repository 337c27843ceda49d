"""Inference: the ELBO read backwards (tape.py, elbo.py, mean_field.py), SVI, and the gradient check;
then automatic guides (autoguide.py, imported as ``minippl.infer.autoguide`` like Pyro's) and
prediction (predictive.py)."""
from . import autoguide
from .check import GradientCheckError, check_gradients
from .elbo import Trace_ELBO
from .mean_field import TraceMeanField_ELBO
from .predictive import Predictive
from .svi import SVI
from .tape import LostGradientError

__all__ = ["GradientCheckError", "LostGradientError", "Predictive", "SVI", "Trace_ELBO", "TraceMeanField_ELBO",
           "autoguide", "check_gradients"]
