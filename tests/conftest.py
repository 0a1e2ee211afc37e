"""Shared pytest configuration."""

from __future__ import annotations

import os

# The agent's GPIO drivers must never touch real pins in tests.
os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")
