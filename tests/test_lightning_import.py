"""ablate-train imports Lightning without torchmetrics's import of scipy.signal, and scipy.signal still works.

Each check runs in a fresh interpreter: in the test process Lightning (and with it scipy.signal) is long imported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def fresh(code: str) -> dict:
    """Run ``code`` in a new interpreter; it prints one JSON object last."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def test_lightning_and_torchmetrics_import_without_scipy_signal_which_imports_whole_afterwards():
    got = fresh("""
        import inspect, json, sys
        from ablate.lightning_import import import_lightning
        import_lightning()
        loaded = {m: m in sys.modules for m in ("lightning", "torchmetrics", "scipy", "scipy.signal", "scipy.stats")}
        import lightning.pytorch  # what ablate-train uses, already there
        inspect.getmodule(import_lightning)  # walks sys.modules: nothing of the placeholder is left to trip it
        import scipy.signal
        window = scipy.signal.windows.hamming(4).round(4).tolist()
        print(json.dumps({"loaded": loaded, "window": window, "file": scipy.signal.__file__.endswith(".py"),
                          "stats": "scipy.stats" in sys.modules}))
    """)
    assert got["loaded"] == {"lightning": True, "torchmetrics": True, "scipy": True, "scipy.signal": False,
                             "scipy.stats": False}
    assert got["window"] == [0.08, 0.77, 0.77, 0.08] and got["file"] and got["stats"]  # the real module, whole


def test_the_placeholder_answers_any_other_name_from_the_real_module():
    got = fresh("""
        import json, sys
        from ablate.lightning_import import signal_deferred
        with signal_deferred() as placeholder:
            import scipy.signal as first
            alias = first.hamming  # what torchmetrics asks: there, so it adds nothing
            still = sys.modules["scipy.signal"] is placeholder
            no_file = not hasattr(first, "__file__")
            from scipy.signal import windows  # any other name: the real module, which now takes its place
            real = sys.modules["scipy.signal"]
        print(json.dumps({"alias": alias, "still": still, "no_file": no_file, "first_is_placeholder": first is placeholder,
                          "real": real is not placeholder and real.windows is windows,
                          "kept": sys.modules.get("scipy.signal") is real, "hamming": windows.hamming(3).round(4).tolist()}))
    """)
    assert got == {"alias": None, "still": True, "no_file": True, "first_is_placeholder": True, "real": True,
                   "kept": True, "hamming": [0.08, 1.0, 0.08]}


def test_nothing_changes_where_lightning_or_scipy_signal_is_already_imported():
    got = fresh("""
        import json, sys
        import scipy.signal
        real = sys.modules["scipy.signal"]
        from ablate.lightning_import import import_lightning
        import_lightning()
        print(json.dumps({"same": sys.modules["scipy.signal"] is real, "lightning": "lightning" in sys.modules}))
    """)
    assert got == {"same": True, "lightning": False}  # it leaves the import to whoever imports Lightning then
