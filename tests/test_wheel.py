"""The wheel `make wheel` leaves in dist/ works on its own: installed into a fresh virtualenv (no
index, no project folder on the path), its herald sends through the sandbox, and its _core loads
the libraries auditwheel bundled in herald_engine.libs/, needing from the system only what the
wheel's manylinux policy allows."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import venv
from importlib import resources
from pathlib import Path

import pytest

DIST = Path(__file__).resolve().parent.parent / "dist"
LIBS_DIR = "herald_engine.libs"
# Libraries the build finds on the build machine (CMakeLists.txt) that no manylinux policy allows:
# the wheel must carry them.
BUNDLED = ("libcurl", "libssl", "libcrypto", "libnghttp2", "libsqlite3")

SCRIPT = r"""
import json, sys, time
import herald
from herald import Engine, Plan, RuleSet, Sandbox

rules = RuleSet({"otp": lambda n: Plan("sms", ["primary"], "Your code is {code}")})
with Sandbox() as sandbox:
    with Engine(sys.argv[1], rules=rules, providers=[sandbox.provider("primary")]) as engine:
        receipt = engine.send("otp", {"id": "u1", "phone": "+15550100"}, {"code": "481516"})
        status = engine.wait(receipt.id, timeout=20)
    messages = sandbox.messages()
loaded = sorted({line.split()[-1] for line in open("/proc/self/maps") if ".so" in line})
print(json.dumps({"herald": herald.__file__, "core": herald._core.__file__, "state": status.state,
                  "last_error": status.last_error, "messages": messages, "loaded": loaded}, default=str))
"""


def the_wheel() -> Path:
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    wheels = sorted(DIST.glob(f"herald_engine-*-{tag}-{tag}-*manylinux*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        if os.environ.get("HERALD_SKIP_WHEEL_TEST") == "1":
            pytest.skip("HERALD_SKIP_WHEEL_TEST=1 and no wheel in dist/")
        pytest.fail(f"no manylinux {tag} wheel of herald-engine in {DIST}: run `make wheel` first "
                    "(or set HERALD_SKIP_WHEEL_TEST=1 to skip this test)", pytrace=False)
    return wheels[-1]


def allowed_system_libs(wheel: Path) -> set[str]:
    """The lib_whitelist of the wheel's lowest manylinux tag, from auditwheel's own policy file."""
    tags = re.findall(r"manylinux_(\d+)_(\d+)_x86_64", wheel.name)
    assert tags, f"no manylinux_X_Y tag in {wheel.name}"
    name = "manylinux_{}_{}".format(*min(tags, key=lambda t: (int(t[0]), int(t[1]))))
    policies = json.loads((resources.files("auditwheel.policy") / "manylinux-policy.json").read_text())
    [policy] = [p for p in policies if p["name"] == name]
    return set(policy["lib_whitelist"])


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the fresh venv's python, the wheel) with the wheel installed from dist/ alone."""
    wheel = the_wheel()
    root = tmp_path_factory.mktemp("wheel-venv")
    # No pip of its own (ensurepip alone takes longer than the test): this pip installs into it.
    venv.EnvBuilder(with_pip=False, clear=True).create(root / "venv")
    python = root / "venv" / "bin" / "python"
    pip = subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-index",
                          "--disable-pip-version-check", wheel],
                         check=False, capture_output=True, text=True, timeout=120, env=clean_env())
    assert pip.returncode == 0, f"pip could not install {wheel.name} offline:\n{pip.stderr}"
    return python, wheel


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "LD_"))}


def test_the_installed_wheel_sends_through_the_sandbox(installed: tuple[Path, Path], tmp_path: Path) -> None:
    python, _ = installed
    # -I: no cwd, no PYTHON* variables, no user site: herald can only come from the venv.
    result = subprocess.run([python, "-I", "-c", SCRIPT, str(tmp_path / "data")], cwd=tmp_path, env=clean_env(),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.splitlines()[-1])
    venv_dir = python.parent.parent
    assert Path(out["herald"]).is_relative_to(venv_dir), out["herald"]
    assert out["state"] == "completed", out["last_error"]
    [message] = out["messages"]
    assert message["body"]["to"]["id"] == "u1"
    assert "481516" in json.dumps(message["body"])
    # The wheel's copies are loaded (Python's own _ssl or _sqlite3 may load the system's beside them:
    # auditwheel renamed the wheel's, so the two do not clash; which one _core uses is the next test's).
    for lib in BUNDLED:
        paths = [p for p in out["loaded"] if Path(p).name.startswith(lib + "-") or Path(p).name.startswith(lib + ".")]
        assert any(Path(p).parent.name == LIBS_DIR for p in paths), f"the wheel's {lib} is not loaded: {paths}"


def test_the_installed_core_needs_only_bundled_and_allowed_libraries(installed: tuple[Path, Path]) -> None:
    python, wheel = installed
    [core] = (python.parent.parent / "lib").glob("python3*/site-packages/herald/_core*.so")
    ldd = subprocess.run(["ldd", core], capture_output=True, text=True, timeout=30, check=True,
                         env=clean_env()).stdout
    assert "not found" not in ldd, ldd
    resolved = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd, re.M))
    for lib in BUNDLED:
        names = [n for n in resolved if n.startswith(lib + "-") or n.startswith(lib + ".")]
        assert names, f"_core does not link {lib}:\n{ldd}"
        for n in names:
            assert Path(resolved[n]).parent.name == LIBS_DIR, f"{n} resolves outside {LIBS_DIR}:\n{ldd}"
    allowed = allowed_system_libs(wheel)
    from_system = {n for n, path in resolved.items() if Path(path).parent.name != LIBS_DIR}
    assert from_system <= allowed, f"system libraries beyond the wheel's policy: {sorted(from_system - allowed)}"
