"""Figures for reports. Plots need matplotlib (`pip install jfacemap[plot]`);
pixel figures (contact sheets) need nothing beyond numpy."""

from __future__ import annotations


def have_matplotlib() -> bool:
    """True when matplotlib can be imported (figures are optional)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (works with no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
