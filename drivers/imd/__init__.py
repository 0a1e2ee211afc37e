"""Insulation monitoring devices (IMD) on the DC output."""
