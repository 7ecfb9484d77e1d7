"""pytest plugin for optcheck (entry point ``pytest11``): Hypothesis profiles, options, fixtures, marker.

Installed with optcheck and loaded by pytest automatically (``-p no:optcheck`` turns it off).
It imports nothing heavy at collection: hypothesis is imported when pytest configures, the
rules only when a test uses the ``optcheck_rule`` fixture or the ``optcheck`` marker.

* Hypothesis profiles ``optcheck-ci`` (derandomised, no deadline, no example database,
  prints the reproduction blob, skips the slow "explain" phase) and ``optcheck-dev``
  (random, 50 examples, no deadline).
  The profile loaded is the first of: ``--optcheck-profile``, the ``OPTCHECK_PROFILE``
  environment variable, the ini option ``optcheck_profile``, ``optcheck-ci`` when the ``CI``
  environment variable is set; otherwise the plugin leaves Hypothesis' profile alone.
* ``--optcheck-rules adam,rmsprop``: the rules the ``optcheck_rule`` fixture runs over.
* ``--optcheck-examples N``: examples for optcheck's property tests (overrides the marker).
* Fixture ``optcheck_rule``: a test using it runs once per rule (every registered rule, or
  the marker's ``rule=``, restricted to ``--optcheck-rules``), receiving the ``Rule`` value.
* Fixture ``optcheck_settings``: the :class:`OptcheckSettings` of the current test.
* Marker ``@pytest.mark.optcheck(rule=..., examples=..., steps=..., seed=...)``: configures
  optcheck's property tests (``optcheck.testing.assert_matches_rule``), which read it
  through :func:`current_settings` while the test runs.

``pytest --help`` lists the options under "optcheck".
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .rules import Rule

__all__ = [
    "MARKER_ARGS",
    "PROFILES",
    "OptcheckSettings",
    "current_settings",
    "optcheck_rule",
    "optcheck_settings",
]

PROFILES: tuple[str, ...] = ("optcheck-ci", "optcheck-dev")
"""The Hypothesis profiles this plugin registers."""

MARKER_ARGS: tuple[str, ...] = ("rule", "examples", "steps", "seed")
"""The keyword arguments of ``@pytest.mark.optcheck``."""

_MARKER_DOC = (
    "optcheck(rule=None, examples=None, steps=None, seed=None): configure optcheck's property tests "
    "for this test: the rule(s) (a name, a list of names or an optcheck.rules.Rule; also the rules the "
    "optcheck_rule fixture runs over), the number of Hypothesis examples, the steps per example and "
    "a seed."
)


@dataclasses.dataclass(frozen=True)
class OptcheckSettings:
    """The optcheck configuration of one test: its ``optcheck`` marker, then the command line.

    * ``rule``: the marker's ``rule=`` (a name, a ``Rule`` or a tuple of them), or None;
    * ``examples``: ``--optcheck-examples``, else the marker's ``examples=``, else None
      (the caller's default);
    * ``steps``, ``seed``: the marker's values, or None;
    * ``rules``: the names given with ``--optcheck-rules``, or None;
    * ``profile``: the Hypothesis profile the plugin loaded, or None.
    """

    rule: Any = None
    examples: int | None = None
    steps: int | None = None
    seed: int | None = None
    rules: tuple[str, ...] | None = None
    profile: str | None = None

    def hypothesis_settings(self) -> Any:
        """A ``hypothesis.settings`` (the current profile) with ``max_examples=examples`` when set."""
        from hypothesis import settings

        if self.examples is None:
            return settings()
        return settings(max_examples=self.examples)


_current: OptcheckSettings | None = None
_PROFILE_KEY = pytest.StashKey[str | None]()


def current_settings() -> OptcheckSettings | None:
    """The :class:`OptcheckSettings` of the test running now, or None outside a test.

    For library code such as ``optcheck.testing.assert_matches_rule``: read it through
    ``sys.modules.get("optcheck.pytest_plugin")`` so that nothing imports pytest when the
    plugin is not loaded.
    """
    return _current


# ---------------------------------------------------------------------------------------------
# Options and configuration
# ---------------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the "optcheck" option group (shown by ``pytest --help``) and the ini option."""
    group = parser.getgroup("optcheck", "optcheck: property tests of optimizers")
    group.addoption(
        "--optcheck-profile",
        dest="optcheck_profile",
        metavar="NAME",
        default=None,
        help="Hypothesis profile to load: optcheck-ci (derandomised, no deadline, prints the "
        "reproduction blob), optcheck-dev (random, 50 examples) or any registered profile. "
        "Default: $OPTCHECK_PROFILE, else the ini option optcheck_profile, else optcheck-ci when "
        "$CI is set.",
    )
    group.addoption(
        "--optcheck-rules",
        dest="optcheck_rules",
        metavar="NAMES",
        default=None,
        help="comma-separated rule names (e.g. adam,rmsprop) that tests using the optcheck_rule "
        "fixture run over. Default: every registered rule, or the rules of the test's "
        "@pytest.mark.optcheck(rule=...).",
    )
    group.addoption(
        "--optcheck-examples",
        dest="optcheck_examples",
        metavar="N",
        type=int,
        default=None,
        help="number of Hypothesis examples for optcheck's property tests (overrides "
        "@pytest.mark.optcheck(examples=...)).",
    )
    parser.addini(
        "optcheck_profile",
        "Hypothesis profile loaded by optcheck's plugin when neither --optcheck-profile nor "
        "$OPTCHECK_PROFILE is given (e.g. optcheck-ci).",
        default=None,
    )


def _register_profiles() -> None:
    from hypothesis import HealthCheck, Phase, settings

    settings.register_profile(
        "optcheck-ci",
        derandomize=True,
        deadline=None,
        print_blob=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
        # the explain phase (which lines only failing examples ran) multiplies the time a
        # failure takes (1.2 s -> 34 s for examples/test_user_rmsprop.py on the seed)
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    )
    settings.register_profile("optcheck-dev", deadline=None, max_examples=50)


def _chosen_profile(config: pytest.Config) -> tuple[str | None, str]:
    opt = config.getoption("optcheck_profile", None)
    if opt:
        return str(opt), "--optcheck-profile"
    env = os.environ.get("OPTCHECK_PROFILE")
    if env:
        return env, "$OPTCHECK_PROFILE"
    ini = config.getini("optcheck_profile")
    if ini:
        return str(ini), "the ini option optcheck_profile"
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        return "optcheck-ci", "$CI"
    return None, ""


def _split_names(text: str) -> tuple[str, ...]:
    return tuple(n.strip().lower() for n in text.split(",") if n.strip())


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker and the Hypothesis profiles; load the profile asked for."""
    config.addinivalue_line("markers", _MARKER_DOC)
    _register_profiles()
    from hypothesis import settings
    from hypothesis.errors import InvalidArgument

    name, source = _chosen_profile(config)
    if name:
        try:
            settings.load_profile(name)
        except InvalidArgument:
            raise pytest.UsageError(
                f"optcheck: Hypothesis profile {name!r} (from {source}) is not registered; "
                f"optcheck registers {list(PROFILES)} (register others with "
                "hypothesis.settings.register_profile in a conftest.py)"
            ) from None
    config.stash[_PROFILE_KEY] = name
    examples = config.getoption("optcheck_examples", None)
    if examples is not None and examples < 1:
        raise pytest.UsageError(f"--optcheck-examples={examples} must be at least 1")
    rules_opt = config.getoption("optcheck_rules", None)
    if rules_opt is not None:
        chosen = _split_names(str(rules_opt))
        if not chosen:
            raise pytest.UsageError(
                f"--optcheck-rules={rules_opt!r} names no rule; e.g. --optcheck-rules adam,sgd"
            )
        from .rules import names

        unknown = [n for n in chosen if n not in names()]
        if unknown:
            raise pytest.UsageError(
                f"--optcheck-rules: unknown rule(s) {unknown}; expected names from {names()}"
            )


def pytest_report_header(config: pytest.Config) -> str | None:
    """One header line naming the Hypothesis profile the plugin loaded."""
    name = config.stash.get(_PROFILE_KEY, None)
    return f"optcheck: hypothesis profile {name!r}" if name else None


# ---------------------------------------------------------------------------------------------
# Marker
# ---------------------------------------------------------------------------------------------


def _marker_values(marker: pytest.Mark | None, where: str) -> dict[str, Any]:
    """The validated arguments of an ``optcheck`` marker; ``pytest.fail`` naming the bad one."""
    if marker is None:
        return {}
    values = dict(marker.kwargs)
    if marker.args:
        if len(marker.args) > 1 or "rule" in values:
            pytest.fail(
                f"{where}: @pytest.mark.optcheck takes at most one positional argument (the rule), "
                f"got args={marker.args!r} and kwargs={marker.kwargs!r}",
                pytrace=False,
            )
        values["rule"] = marker.args[0]
    unknown = [k for k in values if k not in MARKER_ARGS]
    if unknown:
        pytest.fail(
            f"{where}: @pytest.mark.optcheck got unknown argument(s) {unknown}; it takes {list(MARKER_ARGS)}",
            pytrace=False,
        )
    for key in ("examples", "steps"):
        v = values.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            pytest.fail(
                f"{where}: @pytest.mark.optcheck({key}={v!r}) must be a whole number >= 1", pytrace=False
            )
    seed = values.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        pytest.fail(f"{where}: @pytest.mark.optcheck(seed={seed!r}) must be a whole number", pytrace=False)
    if values.get("rule") is not None:
        values["rule"] = _check_marker_rule(values["rule"], where)
    return values


def _check_marker_rule(rule: Any, where: str) -> Any:
    from .rules import Rule, names

    items = list(rule) if isinstance(rule, (list, tuple)) else [rule]
    if not items:
        pytest.fail(f"{where}: @pytest.mark.optcheck(rule=[]) names no rule", pytrace=False)
    for item in items:
        if isinstance(item, Rule):
            continue
        if not isinstance(item, str) or item.strip().lower() not in names():
            pytest.fail(
                f"{where}: @pytest.mark.optcheck(rule={rule!r}): {item!r} is not a rule; expected a name "
                f"from {names()}, a list of names, or an optcheck.rules.Rule",
                pytrace=False,
            )
    norm = [i if isinstance(i, Rule) else i.strip().lower() for i in items]
    return tuple(norm) if isinstance(rule, (list, tuple)) else norm[0]


def _settings_for(config: pytest.Config, marker: pytest.Mark | None, where: str) -> OptcheckSettings:
    values = _marker_values(marker, where)
    rules_opt = config.getoption("optcheck_rules", None)
    examples = config.getoption("optcheck_examples", None)
    return OptcheckSettings(
        rule=values.get("rule"),
        examples=examples if examples is not None else values.get("examples"),
        steps=values.get("steps"),
        seed=values.get("seed"),
        rules=_split_names(str(rules_opt)) if rules_opt is not None else None,
        profile=config.stash.get(_PROFILE_KEY, None),
    )


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise tests using ``optcheck_rule`` over the chosen rules; validate the marker."""
    marker = metafunc.definition.get_closest_marker("optcheck")
    where = metafunc.definition.nodeid
    if "optcheck_rule" not in metafunc.fixturenames:
        if marker is not None:
            _marker_values(marker, where)
        return
    s = _settings_for(metafunc.config, marker, where)
    candidates: Sequence[Any]
    if s.rule is None:
        from .rules import names

        candidates = names()
    else:
        candidates = s.rule if isinstance(s.rule, tuple) else (s.rule,)
    if s.rules is not None:
        candidates = [c for c in candidates if _rule_name(c) in s.rules]
    metafunc.parametrize(
        "optcheck_rule", list(candidates), indirect=True, ids=[_rule_id(c) for c in candidates]
    )


def _rule_name(rule: Any) -> str:
    return rule if isinstance(rule, str) else str(rule.name)


def _rule_id(rule: Any) -> str:
    return _rule_name(rule) if isinstance(rule, str) else f"{rule.name}-custom"


@pytest.fixture(scope="session")
def optcheck_rule(request: pytest.FixtureRequest) -> Rule:
    """The rule under test: one ``optcheck.rules.Rule`` per parametrised run (torch's defaults).

    A test that uses this fixture runs once per rule: every registered rule
    (``optcheck.rules.names()``), or the marker's ``rule=``, restricted to ``--optcheck-rules``.
    Rules are immutable values, so the fixture is session-scoped: it can be used by a
    Hypothesis ``@given`` test without tripping the ``function_scoped_fixture`` health check.
    """
    from .rules import Rule, get

    param = getattr(request, "param", None)
    if isinstance(param, Rule):
        return param
    if not isinstance(param, str):  # pragma: no cover - pytest_generate_tests always parametrises
        raise RuntimeError("optcheck_rule was not parametrised; is the optcheck plugin disabled?")
    return get(param)


@pytest.fixture
def optcheck_settings(request: pytest.FixtureRequest) -> OptcheckSettings:
    """The :class:`OptcheckSettings` of this test (its ``optcheck`` marker and the command line).

    Function-scoped (the marker belongs to the test); inside a Hypothesis ``@given`` test call
    :func:`current_settings` instead, which returns the same value.
    """
    node = request.node
    return _settings_for(request.config, node.get_closest_marker("optcheck"), node.nodeid)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Expose the test's settings through :func:`current_settings` while it runs."""
    global _current
    previous = _current
    _current = _settings_for(item.config, item.get_closest_marker("optcheck"), item.nodeid)
    try:
        return (yield)
    finally:
        _current = previous
