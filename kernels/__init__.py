"""Fused fast paths, installed as ``minippl.kernels`` (see setup.cfg ``package_dir``): part 7 of the course.

The same math as the readable NumPy reference elsewhere in minippl, fused so that each step reads
and writes memory once: bias + activation and their backward, Bernoulli log-prob + gradient,
Normal sample / log-density / gradients, the Normal-Normal KL, the finiteness check of every
gradient before an update, and the Adam/ClippedAdam update over all parameters at once. Read
``cpu_math.py`` (float32 exp and log that vectorise), then ``cpu.py`` (Numba kernels for NumPy
arrays) and ``cpu_adam.py`` (the optimiser step), then ``gpu_sources.py`` (the same kernels in
CUDA C) and ``gpu.py`` (compiled by NVRTC through CuPy, launched on CuPy arrays, same entry
points), and ``registry.py``: which kernel replaces which reference function (marked
``@minippl.backend.fusable``), for which arrays (float32 only).
``minippl.set_backend("numba" | "numpy")`` chooses fused or reference. Matrix products stay in
BLAS / cuBLAS. Every kernel is tested against its reference: tests/test_kernels_cpu.py, and on a
GPU tests/test_kernels_gpu.py; without one, tests/test_kernels_gpu_compile.py compiles the GPU
kernels and checks their PTX and launches. benchmarks/kernels_cpu.py times the CPU kernels,
benchmarks/gpu_check.sh checks and times the GPU path on a GPU machine.
"""
from .. import backend
from .registry import ENTRIES


def _load_cpu():
    from . import cpu  # Numba compiles on first use

    return cpu


def _load_gpu():
    from . import gpu  # imports without CuPy: check_device says what is missing

    gpu.check_device()
    return gpu


backend.plug_in(_load_cpu, _load_gpu, ENTRIES)  # the one dispatch point: backend.fusable
