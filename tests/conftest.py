"""Shared pytest setup: every test starts from a fresh state (param store, validation, seed),
and the repository's examples/ folder is on sys.path, so tests can import the example
helpers (``import mnist``, ``import images``) as the example scripts themselves do."""
import pathlib
import sys

import pytest

import minippl

EXAMPLES_DIR = pathlib.Path(__file__).resolve().parent.parent / "examples"
if str(EXAMPLES_DIR) not in sys.path:
    sys.path.insert(0, str(EXAMPLES_DIR))


@pytest.fixture(autouse=True)
def fresh_state():
    """Every test starts with an empty param store, validation on and the global generator at seed 0."""
    minippl.clear_param_store()
    minippl.enable_validation(True)
    minippl.set_rng_seed(0)
    yield
    minippl.enable_validation(True)
    minippl.clear_param_store()
