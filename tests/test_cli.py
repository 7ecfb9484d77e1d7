"""Tests of the command line: exit codes, usage errors, the JSON schema, literal parsing, aliases."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from optcheck.cli import main, parse_value

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ROOT / "tests" / "targets"
SEED = [
    "examples/rmsprop_nan.py:update_parameters_with_rmsprop",
    "--rule",
    "rmsprop",
    "--hyper",
    "alpha=0.9",
    "--hyper",
    "lr=0.01",
    "--hyper",
    "eps=1e-8",
    "--arg",
    "reg_param=0.7",
    "--arg",
    "batch_size=32",
]
FAST = ["--examples", "10", "--steps", "3"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.01", 0.01),
        ("1e-8", 1e-8),
        ("32", 32),
        ("true", True),
        ("True", True),
        ("false", False),
        ("FALSE", False),
        ("None", None),
        ("(0.9, 0.999)", (0.9, 0.999)),
        ("[1, 2]", [1, 2]),
        ("'adam'", "adam"),
        ("outside-sqrt", "outside-sqrt"),
        ("lambda: 1", "lambda: 1"),
    ],
)
def test_parse_value(text: str, value: Any) -> None:
    assert parse_value(text) == value
    assert type(parse_value(text)) is type(value)


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def t(name: str) -> str:
    return str(TARGETS / name)


A = ["audit", *SEED[:3]]  # the seed target and --rule rmsprop
CONFIG = ["audit", f"{t('config_correct.py')}:adam", "--rule", "adam"]
FUNCTIONAL = ["audit", f"{t('functional_correct.py')}:step", "--rule", "adam"]
OBJECT = ["audit", f"{t('object_correct.py')}:Adam", "--rule", "adam"]

USAGE_ERRORS = [
    pytest.param([], "expected a command", id="no-command"),
    pytest.param(
        ["audit", "examples/rmsprop_nan", "--rule", "rmsprop"], "path/to/file.py:NAME", id="no-colon"
    ),
    pytest.param(
        ["audit", "optcheck/cli.py"], "no function or class that takes gradients", id="no-candidate"
    ),
    pytest.param(
        ["audit", "examples/rmsprop_nan.py:update_parameters_with_rmsprop", "--bind", "x"],
        "NAME=ROLE",
        id="bad-bind",
    ),
    pytest.param(["audit", "nowhere.py:f", "--rule", "sgd"], "'nowhere.py' does not exist", id="no-file"),
    pytest.param(
        ["audit", "examples/rmsprop_nan.py:nope", "--rule", "rmsprop"], "no attribute 'nope'", id="no-name"
    ),
    pytest.param(["audit", "no_such_module_xyz:f", "--rule", "sgd"], "could not be imported", id="no-module"),
    pytest.param(["audit", SEED[0], "--rule", "adamm"], "unknown rule 'adamm'", id="unknown-rule"),
    pytest.param([*A, "--hyper", "foo=1"], "rmsprop has no hyperparameter 'foo'", id="unknown-hyper"),
    pytest.param([*A, "--hyper", "lr"], "expected NAME=VALUE", id="hyper-syntax"),
    pytest.param([*A, "--hyper", "lr=-1"], "lr=-1", id="hyper-range"),
    pytest.param([*A, "--hyper", "learning_rate=0.1", "--hyper", "lr=0.2"], "both set lr", id="hyper-twice"),
    pytest.param([*A, "--arg", "nope=1"], "has no argument 'nope'", id="unknown-arg"),
    pytest.param(
        ["audit", f"{t('dict_correct-extra-arg.py')}:update_parameters", "--rule", "sgd"],
        "'clip'.*--arg clip=VALUE",
        id="unbound-arg",
    ),
    pytest.param([*A, "--style", "torch"], "--style torch needs a torch.optim.Optimizer", id="style-kind"),
    pytest.param([*A, "--style", "nope"], "invalid choice", id="style-unknown"),
    pytest.param([*A, "--examples", "0"], "--examples 0 is invalid", id="examples"),
    pytest.param([*A, "--timeout", "-1"], "--timeout -1.0 is invalid", id="timeout"),
    pytest.param(
        [*A, "--arg", "reg_param=0.7", "--arg", "batch_size=0"], "batch_size=0 is invalid", id="batch-size"
    ),
    # every style: config, functional, object targets too
    pytest.param([*CONFIG, "--hyper", "lr=abc"], "lr='abc' is invalid", id="config-hyper-not-a-number"),
    pytest.param([*CONFIG, "--arg", "zz=1"], "--arg zz: .*no argument 'zz'", id="config-unknown-arg"),
    pytest.param(
        [*CONFIG[:3], "auto", "--hyper", "lr=abc"], "lr='abc' is invalid", id="config-auto-hyper-not-a-number"
    ),
    pytest.param([*FUNCTIONAL, "--hyper", "lr=abc"], "lr='abc' is invalid", id="functional-hyper"),
    pytest.param([*FUNCTIONAL, "--arg", "zz=1"], "no argument 'zz'", id="functional-unknown-arg"),
    pytest.param([*OBJECT, "--hyper", "lr=abc"], "lr='abc' is invalid", id="object-hyper"),
    pytest.param([*OBJECT, "--arg", "zz=1"], "no argument 'zz'", id="object-unknown-arg"),
    pytest.param([*A, "--max-time", "0"], "--max-time 0.0 is invalid", id="max-time"),
    pytest.param([*A, "--max-memory", "lots"], "--max-memory 'lots' is invalid", id="max-memory"),
    pytest.param([*A, "--max-cpu", "-3"], "--max-cpu '-3' is invalid", id="max-cpu"),
    pytest.param([*A, "--max-procs", "1.5"], "--max-procs '1.5' is invalid", id="max-procs"),
    pytest.param([*A, "--max-reply", "none"], "--max-reply cannot be none", id="max-reply"),
    pytest.param([*A, "--env", "A=B"], "--env 'A=B' is invalid", id="env"),
]


@pytest.mark.parametrize(("args", "message"), USAGE_ERRORS)
def test_usage_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = run_main(capsys, *args)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.search(message, lines[0]), lines[0]


def test_usage_error_in_json_mode_prints_a_json_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "audit", "nowhere.py:f", "--rule", "sgd", "--format", "json")
    assert code == 2
    data = json.loads(out)
    assert data["verdict"] == "error" and "does not exist" in data["error"]
    assert len(err.strip().splitlines()) == 1


def test_aliases_and_literals_reach_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(
        capsys,
        "audit",
        "examples/rmsprop_fixed.py:update_parameters_with_rmsprop",
        "--rule",
        "rmsprop",
        "--hyper",
        "learning_rate=0.01",
        "--hyper",
        "beta=0.9",
        "--hyper",
        "epsilon=1e-8",
        "--arg",
        "reg_param=0.7",
        "--arg",
        "batch_size=32",
        "--format",
        "json",
        *FAST,
    )
    data = json.loads(out)
    assert code == 0, data
    assert data["hyper"]["lr"] == 0.01 and data["hyper"]["alpha"] == 0.9 and data["hyper"]["eps"] == 1e-8
    assert data["hyper"]["weight_decay"] == pytest.approx(0.7 / 32)
    assert data["conventions"] == ["course-l2"]


def test_betas_tuple(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(
        capsys,
        "audit",
        f"{t('functional_correct.py')}:step",
        "--rule",
        "adam",
        "--hyper",
        "betas=(0.8, 0.99)",
        "--format",
        "json",
        *FAST,
    )
    data = json.loads(out)
    assert code == 0, data
    assert (data["hyper"]["beta1"], data["hyper"]["beta2"]) == (0.8, 0.99)


# ---------------------------------------------------------------------------------------------
# End to end: the real `python -m optcheck` in a subprocess
# ---------------------------------------------------------------------------------------------


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "optcheck", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def _check_schema(data: dict[str, Any]) -> None:
    assert set(data) >= {"target", "rule", "style", "verdict", "seed", "findings", "conventions", "elapsed_s"}
    assert data["verdict"] in ("pass", "fail", "error")
    assert isinstance(data["seed"], int) and isinstance(data["elapsed_s"], float)
    assert isinstance(data["conventions"], list)
    for f in data["findings"]:
        assert set(f) >= {"id", "severity", "message", "where", "step", "example"}
        assert f["severity"] in ("error", "warning", "info")
        assert isinstance(f["id"], str) and isinstance(f["message"], str) and f["message"]
        assert f["step"] is None or (isinstance(f["step"], int) and f["step"] >= 1)
        if f["example"] is not None:
            assert isinstance(f["example"]["grads"], list) and len(f["example"]["grads"]) >= 1


def test_seed_example_json_exit_1(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    plot = tmp_path / "divergence.png"
    proc = _run("audit", *SEED, "--format", "json", "--plot", str(plot))
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)  # one JSON object, nothing else (no progress on stdout)
    _check_schema(data)
    assert data["verdict"] == "fail" and data["style"] == "dict" and data["rule"] == "rmsprop"
    ids = [f["id"] for f in data["findings"]]
    assert {"eps-outside-denominator", "non-square-term-in-second-moment"} <= set(ids)
    ex = next(f["example"] for f in data["findings"] if f["id"] == "eps-outside-denominator")
    assert set(ex) == {"parameters", "grads"}
    assert isinstance(ex["parameters"]["W1"], list) and isinstance(ex["grads"][0]["dW1"], list)
    assert proc.stderr == ""
    assert plot.stat().st_size > 10_000  # --plot drew where the target leaves the reference


def test_correct_target_text_exit_0() -> None:
    proc = _run("audit", f"{t('dict_correct.py')}:update_parameters_with_adam", "--rule", "adam", *FAST)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("PASS:")
    assert "\r" not in proc.stdout and "\033[" not in proc.stdout  # not a terminal: no progress, no colour


def test_console_script() -> None:
    exe = shutil.which("optcheck")
    if exe is None:
        pytest.skip("the optcheck console script is not installed (pip install -e .)")
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("optcheck ")
