"""Shared pytest setup: puts the repository's examples/ folder on sys.path, so tests
can import the example helpers (``import mnist``, ``import images``) as the example
scripts themselves do."""
import pathlib
import sys

EXAMPLES_DIR = pathlib.Path(__file__).resolve().parent.parent / "examples"
if str(EXAMPLES_DIR) not in sys.path:
    sys.path.insert(0, str(EXAMPLES_DIR))
