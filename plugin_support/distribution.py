"""The Python distribution that ships the plugins: the SDK reads `--version` from it."""

from __future__ import annotations

# pyproject.toml's [project] name (the plugins' own names are not distribution names)
DISTRIBUTION = "braze-currents-mixpanel"
