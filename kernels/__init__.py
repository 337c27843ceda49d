"""Fused fast paths, installed as ``minippl.kernels`` (see setup.cfg ``package_dir``).

This folder will hold fused Numba CPU kernels and CUDA GPU kernels (numba.cuda or
CuPy RawKernels) for the hot loops of a VAE step: bias + activation and its backward,
Bernoulli log-prob + gradient, Normal reparameterised sample + log-density + gradients,
KL, and the Adam update. Each one is the same math as a readable NumPy reference
elsewhere in minippl, and is tested against that reference.
"""
