"""`driftline demo`: a tumour classifier's two days, its drift, late labels, alerts that
fire and resolve, a deletion, and plots (``run.py`` says how it unfolds).

Its modules need the ``demo`` extra (scikit-learn for the data set and the model,
matplotlib for the plots); ``missing_dependencies`` tells the CLI which are absent before
anything imports them.
"""

from __future__ import annotations

from importlib.util import find_spec

# The import name of each package the demo needs beyond Driftline's own dependencies.
DEMO_PACKAGES = {"sklearn": "scikit-learn", "matplotlib": "matplotlib"}


def missing_dependencies() -> list[str]:
    """The demo's packages (distribution names) that are not installed."""
    return [package for module, package in DEMO_PACKAGES.items() if find_spec(module) is None]
