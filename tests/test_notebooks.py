"""notebooks/: each one runs top to bottom on the data directory of a small incident (an error rate
at one provider, an outage at the other, failovers and dead letters, a push-then-email campaign),
and is committed clean."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from herald_workload import Workload, produce

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
EXPECTED = {"delivery_overview.ipynb", "failures.ipynb", "cost_and_volume.ipynb", "campaign_funnel.ipynb"}


def notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Workload:
    return produce(tmp_path_factory.mktemp("notebooks") / "herald-data")


def test_the_four_notebooks_are_there() -> None:
    assert {p.name for p in notebooks()} >= EXPECTED


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.stem)
def test_committed_without_outputs(path: Path) -> None:
    raw = json.loads(path.read_text(encoding="utf-8"))
    nbformat.validate(nbformat.from_dict(raw))
    for cell in raw["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{path.name}: a cell has outputs"
            assert cell["execution_count"] is None, f"{path.name}: a cell has an execution count"
    assert "HERALD_DATA_DIR" in "".join("".join(c["source"]) for c in raw["cells"])


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.stem)
def test_notebook_runs_on_an_incident(path: Path, incident: Workload, tmp_path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    env = {**os.environ, "HERALD_DATA_DIR": str(incident.data_dir), "MPLBACKEND": "Agg"}
    client.execute(env=env)  # raises CellExecutionError naming the cell that failed
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, f"{path.name} drew no figure"
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert f"{len(incident.ids):,} notifications" in text
    if path.stem == "campaign_funnel":
        # The funnel by cascade step: promo's push (step 0) and its email fallback (step 1), with
        # the counts analysis.steps() gives for the same directory.
        from herald import analysis

        steps = analysis.steps(analysis.load_events(incident.data_dir))
        ran = steps[steps["started"] & (steps["type"] == "promo")]
        for step, channel in ((0, "push"), (1, "email")):
            mine = ran[ran["step"] == step]
            assert len(mine) > 0
            line = f"promo step {step} ({channel}): " + " -> ".join(
                f"{int(mine[s].sum()):,} {s}" for s in ("sent", "accepted", "delivered", "opened"))
            assert line in text, (line, text)
        assert "otp step 0 (sms): " in text
