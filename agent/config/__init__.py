"""The agent's one TOML config file: schema, validation with line-precise errors, a writer, OCPP 1.6 keys.

Every refusal raises `ConfigError` whose message reads "FILE:LINE: key.path: reason" (one line per problem,
sorted by line), so an installer can fix the whole file in one pass. One module per job: `schema` (the frozen
dataclasses), `scanner` (the line of each key path: tomllib gives no positions), `validate` (parse_config,
load_config), `writer` (config_to_toml, write_config), `redaction` (AgentConfig.redacted) and `ocpp16_keys`
(the OCPP 1.6 configuration key catalogue the [ocpp] table is checked against).
"""

from __future__ import annotations

from agent.config.errors import ConfigError
from agent.config.ocpp16_keys import (
    MEASURANDS_16,
    OCPP16_KEYS,
    KeyType,
    check_typed_value,
    format_key_value,
    validate_key_value,
)
from agent.config.schema import (
    DEFAULT_CONFIG_PATH,
    AgentConfig,
    BackofficeConfig,
    ChargePointConfig,
    ConnectorConfig,
    ConnectorKind,
    DeviceConfig,
    GpioConfig,
    OcppVersion,
    StateConfig,
)
from agent.config.validate import load_config, parse_config
from agent.config.writer import config_to_toml, write_config

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "MEASURANDS_16",
    "OCPP16_KEYS",
    "AgentConfig",
    "BackofficeConfig",
    "ChargePointConfig",
    "ConfigError",
    "ConnectorConfig",
    "ConnectorKind",
    "DeviceConfig",
    "GpioConfig",
    "KeyType",
    "OcppVersion",
    "StateConfig",
    "check_typed_value",
    "config_to_toml",
    "format_key_value",
    "load_config",
    "parse_config",
    "validate_key_value",
    "write_config",
]
