"""Layer 0 of optcheck: helpers that import nothing else of optcheck.

Trees and array helpers, the error classes, argument validation and the one finding
record live here; every other layer may import from ``_core``, and ``_core`` imports
from no other part of the package (``tests/test_architecture.py`` enforces it).
"""
