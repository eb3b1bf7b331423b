"""The README's examples run as written: every ```python block, in a fresh process and folder, with
the README's own herald.toml (its sandbox URL pointed at the test's sandbox), must deliver."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from herald import Sandbox

README = Path(__file__).resolve().parent.parent / "README.md"
README_SANDBOX_URL = "http://127.0.0.1:8025"  # what the README tells the reader to start


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S)


def run_block(code: str, folder: Path, sandbox: Sandbox) -> subprocess.CompletedProcess[str]:
    [toml] = blocks("toml")
    assert README_SANDBOX_URL in toml, "the README's herald.toml no longer points at the sandbox"
    (folder / "herald.toml").write_text(toml.replace(README_SANDBOX_URL, sandbox.url), encoding="utf-8")
    (folder / "example.py").write_text(code, encoding="utf-8")
    env = {**os.environ, "TWILIO_AUTH_TOKEN": "test-token"}
    return subprocess.run([sys.executable, "example.py"], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_the_readme_has_python_examples() -> None:
    assert blocks("python"), "no ```python block in README.md"


@pytest.mark.parametrize("index", range(len(blocks("python"))), ids=lambda i: f"block{i}")
def test_a_readme_python_block_runs_and_delivers(index: int, tmp_path: Path, sandbox: Sandbox) -> None:
    result = run_block(blocks("python")[index], tmp_path, sandbox)
    assert result.returncode == 0, result.stderr
    assert sandbox.messages(), f"the example exited 0 but the sandbox received nothing:\n{result.stdout}"


def test_the_readme_example_fails_loudly_when_nothing_is_delivered(tmp_path: Path, sandbox: Sandbox) -> None:
    sandbox.set_faults("*", error_rate=1.0, error_status=400)
    result = run_block(blocks("python")[0], tmp_path, sandbox)
    assert result.returncode != 0
    assert "not delivered" in result.stderr
