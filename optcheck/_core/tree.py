"""The one place that walks arrays and (nested) dicts of arrays.

A *tree* is either a single array (a leaf) or a mapping from string keys to
trees, such as the course layout ``{"W1": ..., "b1": ..., "W2": ..., "b2": ...}``.
Everything in optcheck that accepts parameters, gradients or optimizer state
walks them through the functions here, so that error messages name the user's
own key paths (``grads['dW1']``) in one consistent way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeAlias

from .arrays import is_array as is_array
from .errors import UsageError, UsageTypeError

Path: TypeAlias = tuple[str, ...]
Tree: TypeAlias = Any  # an array, or a Mapping[str, Tree]

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


def is_leaf(x: object) -> bool:
    """Whether ``x`` is a leaf of a tree (anything that is not a mapping)."""
    return not isinstance(x, Mapping)


def path_str(name: str, path: Path) -> str:
    """Render a key path the way a user writes it: ``path_str("grads", ("dW1",))`` -> ``grads['dW1']``."""
    return name + "".join(f"[{k!r}]" for k in path)


def describe(x: object) -> str:
    """A short description of a leaf for error messages: shape and dtype, or the type."""
    if is_array(x):
        shape = tuple(int(d) for d in x.shape)  # type: ignore[attr-defined]
        return f"an array of shape {shape} and dtype {x.dtype}"  # type: ignore[attr-defined]
    return f"a {type(x).__name__}"


def flatten(tree: Tree, path: Path = (), *, name: str = "tree") -> list[tuple[Path, Any]]:
    """The leaves of ``tree`` with their key paths, in insertion order of the dicts.

    ``name`` is the argument's name in the error for a key that is not a string.
    """
    out: list[tuple[Path, Any]] = []
    _flatten_into(tree, path, out, name)
    return out


def _flatten_into(tree: Tree, path: Path, out: list[tuple[Path, Any]], name: str = "tree") -> None:
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            if not isinstance(k, str):
                raise UsageTypeError(
                    f"key {k!r} at {path_str(name, path)} is a {type(k).__name__}; "
                    "optcheck trees are dicts with string keys"
                )
            _flatten_into(v, (*path, k), out, name)
    else:
        out.append((path, tree))


def unflatten(structure: Tree, leaves: Iterator[Any] | list[Any]) -> Tree:
    """Build a tree with the structure of ``structure`` whose leaves are ``leaves`` (in flatten order)."""
    it = iter(leaves)

    def build(node: Tree) -> Tree:
        if isinstance(node, Mapping):
            return {k: build(v) for k, v in node.items()}
        return next(it)

    return build(structure)


def _check_same_structure(names: tuple[str, ...], trees: tuple[Tree, ...], path: Path) -> None:
    first = trees[0]
    first_is_map = isinstance(first, Mapping)
    for name, other in zip(names[1:], trees[1:], strict=True):
        if isinstance(other, Mapping) != first_is_map:
            what_first = "a dict" if first_is_map else describe(first)
            what_other = "a dict" if isinstance(other, Mapping) else describe(other)
            raise UsageError(
                f"{path_str(name, path)} is {what_other} but {path_str(names[0], path)} is "
                f"{what_first}; {name} must have the structure of {names[0]}"
            )
        if first_is_map:
            missing = [k for k in first if k not in other]
            extra = [k for k in other if k not in first]
            if missing or extra:
                parts = []
                if missing:
                    parts.append(f"missing key(s) {missing}")
                if extra:
                    parts.append(f"unexpected key(s) {extra}")
                raise UsageError(
                    f"{path_str(name, path)} has {' and '.join(parts)} compared with "
                    f"{path_str(names[0], path)} (keys {list(first)}); "
                    f"{name} must have the same keys as {names[0]}"
                )


def zip_trees(trees: Mapping[str, Tree]) -> list[tuple[Path, tuple[Any, ...]]]:
    """Walk several trees of the same structure together.

    ``trees`` maps a user-facing name (``"params"``, ``"grads"``, ``"exp_avg"``)
    to a tree; the first one gives the structure. Returns ``(path, leaves)`` pairs.
    A missing or extra key raises ``ValueError`` naming the key path in both trees.
    """
    names = tuple(trees)
    values = tuple(trees.values())
    out: list[tuple[Path, tuple[Any, ...]]] = []

    def walk(nodes: tuple[Tree, ...], path: Path) -> None:
        _check_same_structure(names, nodes, path)
        if isinstance(nodes[0], Mapping):
            for k in nodes[0]:
                if not isinstance(k, str):
                    raise UsageTypeError(
                        f"key {k!r} in {path_str(names[0], path)} is a {type(k).__name__}; "
                        "optcheck trees are dicts with string keys"
                    )
                walk(tuple(n[k] for n in nodes), (*path, k))
        else:
            out.append((path, nodes))

    walk(values, ())
    return out


def map_tree(fn: Callable[..., Any], *trees: Tree) -> Tree:
    """Apply ``fn`` leafwise to trees of the same structure and rebuild the structure of the first."""
    names = tuple(f"tree{i}" for i in range(len(trees)))
    pairs = zip_trees(dict(zip(names, trees, strict=True)))
    return unflatten(trees[0], [fn(*leaves) for _, leaves in pairs])
