"""Modbus energy meters: one driver class, one register-map file per model."""
