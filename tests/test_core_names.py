"""Tests of optcheck._core.names: gradient keys matched to parameter keys by one naming convention."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optcheck._core import names
from optcheck._core.names import (
    GRAD_KEY_CONVENTIONS,
    describe_convention,
    grad_key_candidates,
    match_grad_keys,
    match_grad_keys_with_convention,
)

COURSE = ["W1", "b1", "W2", "b2", "W3", "b3"]


@pytest.mark.parametrize(
    ("grads", "convention"),
    [
        (["dW1", "db1", "dW2", "db2", "dW3", "db3"], ("prefix", "d")),
        (["d_W1", "d_b1", "d_W2", "d_b2", "d_W3", "d_b3"], ("prefix", "d_")),
        (["grad_W1", "grad_b1", "grad_W2", "grad_b2", "grad_W3", "grad_b3"], ("prefix", "grad_")),
        (["W1_grad", "b1_grad", "W2_grad", "b2_grad", "W3_grad", "b3_grad"], ("suffix", "_grad")),
        (COURSE, ("same", "")),
    ],
)
def test_each_convention_maps_the_course_network(grads: list[str], convention: tuple[str, str]) -> None:
    shuffled = grads[::-1]  # the order of the keys does not matter
    out = match_grad_keys_with_convention(COURSE, shuffled)
    assert out is not None
    mapping, used = out
    assert used == convention
    assert mapping == dict(zip(COURSE, grads, strict=True))
    assert match_grad_keys(COURSE, shuffled) == mapping


def test_lowercase_and_other_names_written_fresh() -> None:
    assert match_grad_keys(["w", "b"], ["dw", "db"]) == {"w": "dw", "b": "db"}
    assert match_grad_keys(["gamma", "beta"], ["dgamma", "dbeta"]) == {"gamma": "dgamma", "beta": "dbeta"}
    # a parameter whose own name starts with d keeps working under a consistent convention
    assert match_grad_keys(["dense", "bias"], ["ddense", "dbias"]) == {"dense": "ddense", "bias": "dbias"}
    assert match_grad_keys(["W", "dW"], ["dW", "ddW"]) == {"W": "dW", "dW": "ddW"}


@pytest.mark.parametrize(
    ("params", "grads", "why"),
    [
        (["W1", "b1"], ["dW1"], "a key missing"),
        (["W1"], ["dW1", "db1"], "a key extra"),
        (["W1", "b1"], ["dW1", "grad_b1"], "conventions mixed"),
        (["W1", "b1"], ["W1", "db1"], "identity and prefix mixed"),
        (["W1", "b1"], ["dw1", "db1"], "case differs"),
        (["W1", "b1"], ["dW1", "dB1"], "case differs in one key"),
        (["W1", "b1"], ["W1_g", "b1_g"], "an unknown suffix"),
        (["W1", "b1"], ["dW2", "db2"], "other layers"),
        ([], [], "no keys"),
        (["W1", "W1"], ["dW1", "dW1"], "repeated keys"),
        ([1, 2], ["d1", "d2"], "non-string parameter keys"),
    ],
)
def test_no_match_when_no_single_convention_explains_every_key(
    params: list[object], grads: list[object], why: str
) -> None:
    assert match_grad_keys(params, grads) is None, why  # type: ignore[arg-type]
    assert match_grad_keys_with_convention(params, grads) is None, why  # type: ignore[arg-type]


def test_extra_gradient_keys_only_when_allowed_and_never_for_the_identity() -> None:
    params = ["W1", "b1", "W2", "b2"]
    grads = ["dZ2", "dW2", "db2", "dA1", "dZ1", "dW1", "db1"]  # course code: intermediate results too
    assert match_grad_keys(params, grads) is None
    assert match_grad_keys(params, grads, allow_extra=True) == {
        "W1": "dW1",
        "b1": "db1",
        "W2": "dW2",
        "b2": "db2",
    }
    assert match_grad_keys(["W1"], ["W1", "loss"], allow_extra=True) is None  # the identity stays strict
    assert match_grad_keys(["W1"], ["dW1", "grad_W1"], allow_extra=True) is None  # two conventions fit
    assert match_grad_keys(["W1", "b1"], ["dW1", "dZ1"], allow_extra=True) is None  # db1 missing


def test_candidates_and_descriptions() -> None:
    assert grad_key_candidates("b2") == ("b2", "db2", "d_b2", "grad_b2", "b2_grad")
    assert len(grad_key_candidates("x")) == len(GRAD_KEY_CONVENTIONS)
    assert describe_convention(("prefix", "d")) == "prefix 'd' (dW1 for W1)"
    assert describe_convention(("suffix", "_grad")) == "suffix '_grad' (W1_grad for W1)"
    assert describe_convention(("same", "")) == "the same keys"


keys = st.lists(
    st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,6}", fullmatch=True), min_size=1, max_size=6, unique=True
)


@given(keys, st.sampled_from(GRAD_KEY_CONVENTIONS))
def test_a_convention_applied_to_any_keys_is_recovered_or_declared_ambiguous(
    params: list[str], convention: tuple[str, str]
) -> None:
    grads = [grad_key_candidates(p)[GRAD_KEY_CONVENTIONS.index(convention)] for p in params]
    out = match_grad_keys_with_convention(params, grads)
    if out is None:
        # only when another convention explains the same keys too (ambiguous)
        others = [
            c
            for k, c in enumerate(GRAD_KEY_CONVENTIONS)
            if c != convention and {grad_key_candidates(p)[k] for p in params} == set(grads)
        ]
        assert others, (params, grads)
    else:
        mapping, used = out
        assert used == convention
        assert mapping == dict(zip(params, grads, strict=True))


def test_the_module_is_layer_zero() -> None:
    source = Path(__file__).resolve().parent.parent / "optcheck" / "_core" / "names.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not (node.module or "").startswith("optcheck"), ast.dump(node)
        if isinstance(node, ast.Import):
            assert all(not a.name.startswith("optcheck") for a in node.names)


def test_the_docstring_examples_hold() -> None:
    import doctest

    import optcheck._core.names as names

    result = doctest.testmod(names)
    assert result.attempted >= 8 and result.failed == 0


# the helpers the guard and the audit use (trees keyed like the gradients, flat keys, layers)


@pytest.mark.parametrize(
    ("params", "keys", "prefix"),
    [
        (["W1", "b1"], ["dW1", "db1"], "d"),
        (["W1", "b1"], ["W1", "b1"], ""),
        (["W1", "b1"], ["grad_W1", "grad_b1"], "grad_"),
        (["W1"], ["W1_grad"], None),  # a suffix is no prefix
        (["W0", "b0", "W1"], ["dW0", "db0", "dW1"], "d"),
        (["W1", "b1"], ["dW1"], None),  # a missing key
        (["W1"], ["dW1", "dW2"], None),  # an extra key
        (["W1"], [], None),
        (["W1"], [1], None),
    ],
)
def test_key_prefix(params: list[str], keys: list[object], prefix: str | None) -> None:
    assert names.key_prefix(params, keys) == prefix


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


def test_rekey() -> None:
    assert names.rekey({"dW1": 1, "db1": 2}, "d") == {"W1": 1, "b1": 2}
