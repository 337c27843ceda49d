"""Neural networks with hand-written backpropagation, recorded on the trace (the tape).

Read in order: module.py (parameters, submodules, how a layer call is recorded), layers.py
(Dense and the activations, each backward under its forward), functional.py (traced
arithmetic for model code), bayesian.py (PyroModule: attributes that are params or random
variables). Mirrors ``torch.nn`` names so Pyro modules port by imports.
"""
from . import functional
from .bayesian import Param, PyroModule, PyroParam, PyroSample, Sample
from .layers import Dense, Exp, Linear, ReLU, Sigmoid, Softplus, Tanh
from .module import Module, Sequential

__all__ = ["Module", "Sequential", "Dense", "Linear", "Sigmoid", "Softplus", "Tanh", "ReLU",
           "Exp", "functional", "PyroModule", "PyroParam", "PyroSample", "Param", "Sample"]
