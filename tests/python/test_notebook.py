"""examples/python/backtest.ipynb runs headless from top to bottom (nbclient with the Debian
ipykernel) and shows what it promises: the program, the actions, the figure, the timeline and
the diff."""
import os
import pathlib

import pytest

import nudge
from conftest import ROOT

NOTEBOOK = ROOT / "examples" / "python" / "backtest.ipynb"


def test_backtest_notebook_executes_and_draws_the_figure():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("matplotlib")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # The kernel runs in the notebook's folder with this process's environment, and finds the
    # module this test imported (PYTHONPATH may be relative to the repository).
    env = dict(os.environ, PYDEVD_DISABLE_FILE_VALIDATION="1")
    package = str(pathlib.Path(nudge.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([package, *filter(None, [env.get("PYTHONPATH")])])
    client = nbclient.NotebookClient(nb, timeout=60, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute(env=env)  # raises CellExecutionError on any failing cell

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    data = [o.get("data", {}) for o in outputs]
    html = "".join(d.get("text/html", "") for d in data)
    assert sum("image/png" in d for d in data) == 1  # the sends-per-day figure
    assert "nudge program (3 rules, 1 workflow)" in html
    assert "<caption>timeline of contact " in html
    assert "nudge rule statistics (3 rules)" in html
    text = "".join(o.get("text", "") for o in outputs)
    assert "1321 events of 298 customers -> 1353 actions" in text
    assert "Diff(added=" in text
