"""Tests of optcheck._core.tree, the one tree walker."""

from __future__ import annotations

import numpy as np
import pytest

from optcheck._core.tree import flatten, map_tree, path_str, unflatten, zip_trees


def test_flatten_and_unflatten_round_trip_nested() -> None:
    tree = {"W1": np.ones((2, 3)), "inner": {"b": np.zeros(2), "c": np.float64(1.0)}}
    leaves = flatten(tree)
    assert [p for p, _ in leaves] == [("W1",), ("inner", "b"), ("inner", "c")]
    rebuilt = unflatten(tree, [x for _, x in leaves])
    assert rebuilt["inner"]["b"] is tree["inner"]["b"]
    assert list(rebuilt) == ["W1", "inner"]


def test_single_array_is_a_leaf_with_empty_path() -> None:
    x = np.arange(3.0)
    assert flatten(x) == [((), x)]
    assert path_str("grads", ()) == "grads"


def test_path_str_reads_like_user_code() -> None:
    assert path_str("S", ("dW1",)) == "S['dW1']"
    assert path_str("state['exp_avg']", ("a", "b")) == "state['exp_avg']['a']['b']"


def test_zip_trees_names_missing_and_extra_keys() -> None:
    p = {"W1": np.ones(2), "b1": np.ones(2)}
    g = {"W1": np.ones(2), "db1": np.ones(2)}
    with pytest.raises(ValueError) as e:
        zip_trees({"params": p, "grads": g})
    assert str(e.value) == (
        "grads has missing key(s) ['b1'] and unexpected key(s) ['db1'] compared with params "
        "(keys ['W1', 'b1']); grads must have the same keys as params"
    )


def test_zip_trees_dict_versus_array_message() -> None:
    with pytest.raises(
        ValueError, match=r"grads\['a'\] is a dict but params\['a'\] is an array of shape \(2,\)"
    ):
        zip_trees({"params": {"a": np.ones(2)}, "grads": {"a": {"x": np.ones(2)}}})


def test_non_string_keys_are_rejected_with_the_path() -> None:
    with pytest.raises(TypeError, match=r"key 1 at tree\['a'\] is a int"):
        flatten({"a": {1: np.ones(1)}})


def test_map_tree_keeps_structure() -> None:
    a = {"x": np.ones(2), "y": {"z": np.ones(1)}}
    out = map_tree(lambda u, v: u + v, a, a)
    assert np.array_equal(out["y"]["z"], np.array([2.0]))
