"""Hostile targets against ``optcheck audit`` (issue 15): each is contained.

Every case runs the real command line in a fresh directory with a fresh ``$HOME`` and checks:
the exit status and the finding expected (or a clean exit), within its time bound; no process
left behind (every process the target starts carries a unique marker, searched for in
``/proc``); the user's directory and home unchanged; and no PASS for a target that is wrong.
The targets live in ``tests/targets/hostile/``; limits are tight so the suite stays quick.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = ROOT / "tests" / "targets" / "hostile"
MARK = "OPTCHECK_HOSTILE_MARKER"

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="checks processes in /proc"),
    pytest.mark.slow,  # each case starts the command line and a child process: seconds apiece
]


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".cache" not in p.relative_to(folder).parts  # the user cache dir is allowed
    }


def _marked(marker: str) -> list[int]:
    """Processes (other than this one) whose command line or environment carries ``marker``."""
    needle = marker.encode()
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        for part in ("cmdline", "environ"):
            try:
                with open(f"/proc/{entry.name}/{part}", "rb") as f:
                    data = f.read()
            except OSError:
                continue
            if needle in data:
                try:  # a zombie waiting for its parent holds no resources; it still counts
                    with open(f"/proc/{entry.name}/stat", "rb") as f:
                        state = f.read().rsplit(b")", 1)[1].split()[0]
                except (OSError, IndexError):
                    state = b"?"
                if state != b"Z":
                    out.append(int(entry.name))
                break
    return out


def _none_left(marker: str, within: float = 5.0) -> list[int]:
    end = time.monotonic() + within
    left = _marked(marker)
    while left and time.monotonic() < end:
        time.sleep(0.1)
        left = _marked(marker)
    for pid in left:  # do not leave them running after a failed test
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return left


class Sandbox:
    """A user directory and a home for one audit, and the environment of the command line."""

    def __init__(self, tmp: Path) -> None:
        self.cwd = tmp / "user"
        self.home = tmp / "home"
        self.shared = tmp / "shared"
        for d in (self.cwd, self.home, self.shared):
            d.mkdir()
        (self.cwd / "keep.txt").write_text("the user's file")
        (self.cwd / "train.py").write_text("print('the user's script')\n")
        (self.home / "secret.txt").write_text("the user's secret")
        self.marker = f"optcheck-hostile-{uuid.uuid4().hex}"
        self.env = dict(os.environ)
        self.env.update(
            {
                "HOME": str(self.home),
                MARK: self.marker,
                "OPTCHECK_HOSTILE_DIR": str(self.shared),
                "PYTHONPATH": str(ROOT) + os.pathsep + self.env.get("PYTHONPATH", ""),
                "OPTCHECK_CANARY_SECRET": "hunter2",
            }
        )
        self.before = (_digest(self.cwd), _digest(self.home))

    def cmd(self, file: str, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "optcheck",
            "audit",
            f"{HOSTILE / file}:update_parameters",
            "--rule",
            "sgd",
            "--examples",
            "3",
            "--steps",
            "2",
            "--timeout",
            "2",
            "--max-time",
            "40",
            "--format",
            "json",
            "--env",
            MARK,
            "--env",
            "OPTCHECK_HOSTILE_DIR",
            *extra,
        ]

    def unchanged(self) -> bool:
        return (_digest(self.cwd), _digest(self.home)) == self.before and not (
            self.cwd / ".hypothesis"
        ).exists()


# id, target file, extra options, exit status, finding id expected (None: a clean pass), text in its message
CASES = [
    pytest.param("hang.py", [], 1, "timeout", "within 2 s", id="hang"),
    pytest.param(
        "hang_at_import.py",
        ["--max-time", "3"],
        2,
        None,
        "did not finish importing within 3 s",
        id="hang-at-import",
    ),
    pytest.param("huge_allocation.py", [], 1, "raised-exception", "--max-memory", id="huge-allocation"),
    pytest.param("huge_return.py", [], 1, "bad-return", "--max-reply", id="huge-return"),
    pytest.param("fork_bomb.py", [], 0, None, "", id="fork-bomb"),
    pytest.param("grandchild_stdout.py", [], 0, None, "", id="grandchild-holds-stdout"),
    pytest.param("orphan.py", [], 0, None, "", id="orphaned-child"),
    pytest.param("crafted_pickle.py", [], 1, "protocol-violation", "protocol", id="crafted-pickle"),
    pytest.param("garbage_bytes.py", [], 1, "protocol-violation", "protocol", id="garbage-bytes"),
    pytest.param("patch_optcheck.py", [], 1, "input-mutated", "in place", id="patches-optcheck"),
    pytest.param("files.py", [], 0, None, "", id="writes-and-deletes-files"),
    pytest.param("canary.py", [], 0, None, "", id="reads-a-canary-variable"),
    pytest.param("object_dtype.py", [], 1, "bad-return", "dtype object", id="object-dtype-return"),
    # each limit's flag holds
    pytest.param("hang.py", ["--max-cpu", "1", "--timeout", "30"], 1, "timeout", "--max-cpu", id="max-cpu"),
    pytest.param("huge_return.py", ["--max-reply", "1M"], 1, "bad-return", "1,048,576 bytes", id="max-reply"),
    pytest.param(
        "big_file.py", ["--max-file-size", "1M"], 1, "raised-exception", "File too large", id="max-file-size"
    ),
    pytest.param(
        "many_files.py",
        ["--max-open-files", "256"],
        1,
        "raised-exception",
        "Too many open files",
        id="max-open-files",
    ),
]


@pytest.mark.parametrize(("file", "extra", "status", "fid", "text"), CASES)
def test_hostile_target_is_contained(
    tmp_path: Path, file: str, extra: list[str], status: int, fid: str | None, text: str
) -> None:
    box = Sandbox(tmp_path)
    t0 = time.monotonic()
    proc = subprocess.run(
        box.cmd(file, *extra), cwd=box.cwd, env=box.env, capture_output=True, text=True, timeout=120
    )
    elapsed = time.monotonic() - t0
    left = _none_left(box.marker)
    assert proc.returncode == status, (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    assert elapsed < 60
    assert left == [], f"processes left behind: {left}"
    assert box.unchanged(), "the user's directory or home changed"
    assert list(box.shared.iterdir()) == []  # nothing unpickled: the payload never ran
    report = json.loads(proc.stdout)
    if status == 2:
        assert report["verdict"] == "error" and text in report["error"]
        assert len(proc.stderr.strip().splitlines()) == 1
        return
    ids = [f["id"] for f in report["findings"] if f["severity"] == "error"]
    if fid is None:
        assert report["verdict"] == "pass", ids
    else:
        assert report["verdict"] == "fail"
        found = [f for f in report["findings"] if f["id"] == fid]
        assert found, ids
        assert text in found[0]["message"], found[0]["message"]


def test_patching_optcheck_in_the_child_cannot_hide_the_bug(tmp_path: Path) -> None:
    box = Sandbox(tmp_path)
    proc = subprocess.run(
        box.cmd("patch_optcheck.py"), cwd=box.cwd, env=box.env, capture_output=True, text=True, timeout=120
    )
    report = json.loads(proc.stdout)
    ids = {f["id"] for f in report["findings"] if f["severity"] == "error"}
    assert "input-mutated" in ids and ids - {"input-mutated"}, ids  # and the wrong step itself


def test_the_canary_is_seen_only_when_passed_through(tmp_path: Path) -> None:
    box = Sandbox(tmp_path)
    proc = subprocess.run(
        box.cmd("canary.py", "--env", "OPTCHECK_CANARY_SECRET"),
        cwd=box.cwd,
        env=box.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout[
        -2000:
    ]  # the check above can fail: the variable does reach it now


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_killing_the_audit_leaves_nothing(tmp_path: Path, sig: signal.Signals) -> None:
    box = Sandbox(tmp_path)
    proc = subprocess.Popen(
        box.cmd("hang_with_child.py", "--timeout", "60"),
        cwd=box.cwd,
        env=box.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        end = time.monotonic() + 30
        while (
            time.monotonic() < end and len(_marked(box.marker)) < 3
        ):  # the audit, its worker, the grandchild
            time.sleep(0.1)
        assert len(_marked(box.marker)) >= 3
        time.sleep(0.3)
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGTERM:
        assert proc.returncode == 2
        assert err.strip().splitlines()[-1].startswith("optcheck audit: terminated")
        assert len(err.strip().splitlines()) == 1
    else:
        assert proc.returncode == -signal.SIGKILL
    assert _none_left(box.marker, within=10.0) == []
    assert box.unchanged()


def _run(box: Sandbox, *args: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        box.cmd(*args), cwd=box.cwd, env=box.env, capture_output=True, text=True, timeout=120
    )


def test_budget_exhausted_reports_what_was_covered(tmp_path: Path) -> None:
    box = Sandbox(tmp_path)
    proc = _run(box, "hang.py", "--max-time", "3", "--timeout", "30")
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    f = [x for x in report["findings"] if x["id"] == "budget-exhausted"]
    assert f and "--max-time" in f[0]["message"]
    assert report["elapsed_s"] < 10
    assert _none_left(box.marker) == []
