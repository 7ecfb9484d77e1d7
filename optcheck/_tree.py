"""Moved to :mod:`optcheck._core.tree` (layer 0); this name stays while branches in flight still import it.

New code imports ``optcheck._core.tree``; ``tests/test_architecture.py`` keeps this shim in
layer 0, and it goes once nothing imports it.
"""

from __future__ import annotations

from ._core.tree import Path as Path
from ._core.tree import Tree as Tree
from ._core.tree import describe as describe
from ._core.tree import flatten as flatten
from ._core.tree import is_array as is_array
from ._core.tree import is_leaf as is_leaf
from ._core.tree import map_tree as map_tree
from ._core.tree import path_str as path_str
from ._core.tree import unflatten as unflatten
from ._core.tree import zip_trees as zip_trees

__all__ = [
    "Path",
    "Tree",
    "describe",
    "flatten",
    "is_array",
    "is_leaf",
    "map_tree",
    "path_str",
    "unflatten",
    "zip_trees",
]
