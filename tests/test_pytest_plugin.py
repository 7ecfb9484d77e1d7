"""Tests of optcheck.pytest_plugin with pytester: options, profiles, fixtures, marker."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from hypothesis import settings

import optcheck
from optcheck import pytest_plugin

pytest_plugins = ["pytester"]

N_RULES = len(optcheck.rules.names())


@pytest.fixture(autouse=True)
def _restore_hypothesis_profile(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In-process pytester runs load profiles globally; put the outer one back afterwards."""
    for var in ("CI", "OPTCHECK_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    name = settings.get_current_profile_name()
    yield
    settings.load_profile(name)


PROFILE_PROBE = r"""
from hypothesis import settings

def test_profile():
    print("\nPROFILE", settings.get_current_profile_name(), settings.default.max_examples,
          settings.default.derandomize, settings.default.database)
"""


def _lit(text: str) -> str:
    """``text`` as an fnmatch pattern matching itself (brackets are character classes there)."""
    return re.sub(r"[\[\]]", lambda m: f"[{m.group(0)}]", text)


def _profile_line(result: pytest.RunResult) -> str:
    lines = [ln for ln in result.outlines if ln.startswith("PROFILE")]
    assert lines, result.stdout.str()
    return lines[0]


def test_help_lists_the_options_under_an_optcheck_group(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    text = result.stdout.str()
    assert "optcheck: property tests of optimizers:" in text
    for option in ("--optcheck-profile=NAME", "--optcheck-rules=NAMES", "--optcheck-examples=N"):
        assert option in text
    assert "optcheck_profile (string)" in text


def test_markers_lists_the_optcheck_marker(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.optcheck(rule=None, examples=None, steps=None, seed=None)*"])


@pytest.mark.parametrize(
    ("args", "env", "ini", "expected"),
    [
        (["--optcheck-profile", "optcheck-dev"], {}, None, "PROFILE optcheck-dev 50 False"),
        ([], {"OPTCHECK_PROFILE": "optcheck-dev"}, None, "PROFILE optcheck-dev 50 False"),
        ([], {"CI": "true"}, None, "PROFILE optcheck-ci 100 True None"),
        ([], {}, "optcheck-ci", "PROFILE optcheck-ci 100 True None"),
        (
            ["--optcheck-profile", "optcheck-ci"],
            {"OPTCHECK_PROFILE": "optcheck-dev"},
            None,
            "PROFILE optcheck-ci",
        ),
        ([], {"OPTCHECK_PROFILE": "optcheck-ci"}, "optcheck-dev", "PROFILE optcheck-ci"),
        ([], {}, None, "PROFILE default 100 False"),
        ([], {"CI": "false"}, None, "PROFILE default 100 False"),
    ],
    ids=["option", "env", "ci", "ini", "option-beats-env", "env-beats-ini", "none", "ci-false"],
)
def test_profile_selection(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    ini: str | None,
    expected: str,
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    if ini:
        pytester.makeini(f"[pytest]\noptcheck_profile = {ini}\n")
    settings.load_profile("default")
    pytester.makepyfile(PROFILE_PROBE)
    result = pytester.runpytest("-s", *args)
    result.assert_outcomes(passed=1)
    assert _profile_line(result).startswith(expected)


def test_the_ci_profile_skips_the_explain_phase(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from hypothesis import Phase, settings

        def test_phases():
            assert Phase.explain not in settings.default.phases
            assert Phase.shrink in settings.default.phases
            assert settings.default.deadline is None and settings.default.print_blob
        """
    )
    pytester.runpytest("--optcheck-profile", "optcheck-ci").assert_outcomes(passed=1)


def test_report_header_names_the_profile(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--optcheck-profile", "optcheck-dev")
    result.stdout.fnmatch_lines(["optcheck: hypothesis profile 'optcheck-dev'"])


def test_unknown_profile_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--optcheck-profile", "optcheck-fast")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            _lit(
                "*optcheck: Hypothesis profile 'optcheck-fast' (from --optcheck-profile) is not registered; "
                "optcheck registers ['optcheck-ci', 'optcheck-dev'] (register others with "
                "hypothesis.settings.register_profile in a conftest.py)"
            )
        ]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--optcheck-rules", "adam,adamz"],
            "--optcheck-rules: unknown rule(s) ['adamz']; expected names from*",
        ),
        (["--optcheck-rules", " , "], "--optcheck-rules=' , ' names no rule*"),
        (["--optcheck-examples", "0"], "--optcheck-examples=0 must be at least 1"),
    ],
)
def test_bad_options_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*" + _lit(message)])


RULE_PROBE = r"""
import pytest

def test_rule(optcheck_rule):
    from optcheck.rules import Rule
    assert isinstance(optcheck_rule, Rule)
    print("\nRULE", optcheck_rule.name)

@pytest.mark.optcheck(rule="adam")
def test_marked(optcheck_rule):
    assert optcheck_rule.name == "adam"

@pytest.mark.optcheck(rule=["sgd", "lion"])
def test_marked_list(optcheck_rule):
    assert optcheck_rule.name in ("sgd", "lion")
"""


def test_optcheck_rule_runs_over_every_registered_rule(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(RULE_PROBE)
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=N_RULES + 1 + 2)
    # session-scoped parametrised fixtures make pytest group the tests by rule: check each line alone
    for line in (
        "*::test_rule?adam? PASSED*",
        "*::test_marked?adam? PASSED*",
        "*::test_marked_list?lion? PASSED*",
    ):
        result.stdout.fnmatch_lines([line])


def test_optcheck_rules_option_restricts_the_rules(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(RULE_PROBE)
    result = pytester.runpytest("-v", "--optcheck-rules", "ADAM, sgd")
    # test_rule: adam and sgd; test_marked: adam; test_marked_list: sgd only
    result.assert_outcomes(passed=4)


def test_a_marker_rule_outside_the_option_leaves_an_empty_parameter_set(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(RULE_PROBE)
    result = pytester.runpytest("-rs", "--optcheck-rules", "rmsprop")
    result.assert_outcomes(passed=1, skipped=2)


def test_marker_with_a_configured_rule(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        import optcheck

        @pytest.mark.optcheck(rule=optcheck.rules.get("adam", amsgrad=True))
        def test_custom(optcheck_rule):
            assert optcheck_rule.amsgrad
        """
    )
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_custom?adam-custom? PASSED*"])


SETTINGS_PROBE = r"""
import pytest
from optcheck.pytest_plugin import current_settings

@pytest.mark.optcheck(rule="rmsprop", examples=7, steps=4, seed=3)
def test_marked(optcheck_settings):
    s = current_settings()
    assert s == optcheck_settings
    print("\nSETTINGS", s.rule, s.examples, s.steps, s.seed, s.rules, s.profile)

def test_unmarked():
    s = current_settings()
    print("\nSETTINGS", s.rule, s.examples, s.steps, s.seed)

@pytest.mark.optcheck(examples=5)
class TestClass:
    def test_inherits(self):
        print("\nSETTINGS", current_settings().examples, current_settings().hypothesis_settings().max_examples)
"""


def test_marker_values_reach_current_settings_and_the_fixture(pytester: pytest.Pytester) -> None:
    outer = pytest_plugin.current_settings()  # this very test's settings
    assert outer is not None and outer.rule is None
    pytester.makepyfile(SETTINGS_PROBE)
    result = pytester.runpytest("-s", "--optcheck-profile", "optcheck-ci")
    result.assert_outcomes(passed=3)
    lines = [ln for ln in result.outlines if ln.startswith("SETTINGS")]
    assert lines == [
        "SETTINGS rmsprop 7 4 3 None optcheck-ci",
        "SETTINGS None None None None",
        "SETTINGS 5 5",
    ]
    assert pytest_plugin.current_settings() is outer  # the inner tests' settings were reset


def test_command_line_examples_override_the_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SETTINGS_PROBE)
    result = pytester.runpytest("-s", "--optcheck-examples", "11", "--optcheck-rules", "adam")
    result.assert_outcomes(passed=3)
    lines = [ln for ln in result.outlines if ln.startswith("SETTINGS")]
    assert lines[0] == "SETTINGS rmsprop 11 4 3 ('adam',) None"
    assert lines[2] == "SETTINGS 11 11"


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ('rule="adamz"', "@pytest.mark.optcheck(rule='adamz'): 'adamz' is not a rule; expected a name from*"),
        ("rule=[]", "@pytest.mark.optcheck(rule=[]) names no rule"),
        ("examples=0", "@pytest.mark.optcheck(examples=0) must be a whole number >= 1"),
        ('steps="3"', "@pytest.mark.optcheck(steps='3') must be a whole number >= 1"),
        ("seed=1.5", "@pytest.mark.optcheck(seed=1.5) must be a whole number"),
        (
            "budget=3",
            "@pytest.mark.optcheck got unknown argument(s) ['budget']; it takes ['rule', 'examples', 'steps', 'seed']",
        ),
        ('"adam", "sgd"', "@pytest.mark.optcheck takes at most one positional argument (the rule)*"),
    ],
)
@pytest.mark.parametrize("uses_fixture", [False, True])
def test_bad_marker_arguments_fail_at_collection_naming_them(
    pytester: pytest.Pytester, marker: str, message: str, uses_fixture: bool
) -> None:
    arg = "optcheck_rule" if uses_fixture else ""
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.optcheck({marker})
        def test_bad({arg}):
            pass
        """
    )
    result = pytester.runpytest()
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*test_bad*" + _lit(message) + "*"])


def test_optcheck_rule_works_with_given(pytester: pytest.Pytester) -> None:
    """The fixture is session-scoped, so Hypothesis' function_scoped_fixture health check passes."""
    pytester.makepyfile(
        """
        import numpy as np
        from hypothesis import given, settings
        from optcheck import strategies as ost

        @settings(max_examples=5)
        @given(p=ost.params(style="array"))
        def test_step(optcheck_rule, p):
            new_p, state = optcheck_rule.step(p, np.zeros_like(p), optcheck_rule.init(p))
            assert new_p.shape == p.shape and state["step"] == 1
        """
    )
    pytester.runpytest("--optcheck-rules", "adam,sgd,lion").assert_outcomes(passed=3)


def test_positional_rule_is_accepted(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.optcheck("lion")
        def test_one(optcheck_rule):
            assert optcheck_rule.name == "lion"
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_plugin_imports_nothing_heavy(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sys

        def test_modules():
            heavy = [m for m in ("torch", "scipy", "matplotlib", "optcheck.strategies", "optcheck.invariants",
                                 "optcheck.audit", "optcheck.diagnose") if m in sys.modules]
            assert heavy == []
            assert "optcheck.pytest_plugin" in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("--optcheck-profile", "optcheck-ci", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_plugin_can_be_disabled(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(optcheck_rule): pass")
    result = pytester.runpytest("-p", "no:optcheck")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'optcheck_rule' not found*"])
