"""`python -m simulator.backoffice`: run the back office with its HTTP control API."""

from __future__ import annotations

from simulator.backoffice.cli import main_backoffice

raise SystemExit(main_backoffice())
