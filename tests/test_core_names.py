"""Course key matching (optcheck._core.names): ``dW1`` for ``W1``, flat state keys, layer numbering."""

from __future__ import annotations

import pytest

from optcheck._core import names


@pytest.mark.parametrize(
    ("params", "keys", "prefix"),
    [
        (["W1", "b1"], ["dW1", "db1"], "d"),
        (["W1", "b1"], ["W1", "b1"], ""),
        (["W0", "b0", "W1"], ["dW0", "db0", "dW1"], "d"),
        (["W1", "b1"], ["dW1"], None),  # a missing key
        (["W1"], ["dW1", "dW2"], None),  # an extra key
        (["W1"], [], None),
        (["W1"], [1], None),
    ],
)
def test_key_prefix(params: list[str], keys: list[object], prefix: str | None) -> None:
    assert names.key_prefix(params, keys) == prefix


def test_match_keys() -> None:
    assert names.match_keys(["W1", "b1"], ["dW1", "db1"]) == {"dW1": "W1", "db1": "b1"}
    assert names.match_keys(["W1"], ["V1"]) is None


@pytest.mark.parametrize(
    ("key", "split"),
    [
        ("cache_dW1", ("cache", "d", "W1")),
        ("v_dW2", ("v", "d", "W2")),
        ("VdW1", ("V", "d", "W1")),
        ("s_W1", ("s", "", "W1")),
        ("m_W10", ("m", "", "W10")),  # the longest key wins
        ("dW1", None),  # the gradient key itself
        ("W1", None),
        ("_W1", None),
    ],
)
def test_split_state_key(key: str, split: tuple[str, str, str] | None) -> None:
    assert names.split_state_key(key, ["W1", "b1", "W2", "W10"]) == split


def test_layers_numbered_from_zero_or_one() -> None:
    assert names.layer_base(["W1", "b1", "W2"]) == 1
    assert names.layer_base(["W0", "b0"]) == 0
    assert names.layer_base(["weight", "bias"]) is None
    assert names.renumber(["W1", "b1", "W2"], 0) == {"W1": "W0", "b1": "b0", "W2": "W1"}
    assert names.renumber(["w", "b"], 0) == {"w": "w", "b": "b"}


def test_rekey_and_grad_key() -> None:
    assert names.rekey({"dW1": 1, "db1": 2}, "d") == {"W1": 1, "b1": 2}
    assert names.grad_key("W1") == "dW1"
