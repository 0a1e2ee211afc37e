"""Tests for agent.config: the example file, line-precise refusals, the writer, redaction, OCPP keys."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import re
from pathlib import Path

import pytest

from agent.config import (
    MEASURANDS_16,
    OCPP16_KEYS,
    AgentConfig,
    BackofficeConfig,
    ChargePointConfig,
    ConfigError,
    ConnectorConfig,
    ConnectorKind,
    DeviceConfig,
    GpioConfig,
    KeyType,
    OcppVersion,
    StateConfig,
    check_typed_value,
    config_to_toml,
    format_key_value,
    load_config,
    parse_config,
    validate_key_value,
    write_config,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "systemd" / "evse-agent.toml.example"
SRC = "agent.toml"

BASE = """\
[charge_point]
id = "CP-1"
vendor = "Acme"
model = "AC22"

[backoffice]
url = "ws://127.0.0.1:9000/ocpp"

[state]
directory = "/var/lib/evse-agent"

[estop]
driver = "gpio_estop"
pin = 17

[[connectors]]
id = 1
kind = "dc"
max_current_a = 125.0
[connectors.meter]
driver = "eastron_sdm630"
url = "tcp://127.0.0.1:5020"
device_id = 1
[connectors.dc_controller]
driver = "modbus_dc"
url = "tcp://127.0.0.1:5021"
device_id = 1
[connectors.contactor]
driver = "gpio_contactor"
pin = 22
feedback_pin = 23

[[connectors]]
id = 2
kind = "ac"
max_current_a = 32.0
[connectors.meter]
driver = "eastron_sdm630"
url = "tcp://127.0.0.1:5020"
device_id = 2
[connectors.dc_controller]
driver = "modbus_dc"
url = "tcp://127.0.0.1:5020"
device_id = 3
[connectors.contactor]
driver = "gpio_contactor"
pin = 26
feedback_pin = 27
"""


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line number of the n-th line containing needle (independent of the code under test)."""
    seen = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            seen += 1
            if seen == occurrence:
                return number
    raise AssertionError(f"{needle!r} not in text")


def refusal(text: str) -> str:
    """The ConfigError message for text, which must be refused."""
    with pytest.raises(ConfigError) as info:
        parse_config(text, SRC)
    return str(info.value)


def replace(text: str, old: str, new: str, occurrence: int = 1) -> str:
    """Replace the n-th occurrence of old by new."""
    start = -1
    for _ in range(occurrence):
        start = text.index(old, start + 1)
    return text[:start] + new + text[start + len(old) :]


# ---------------------------------------------------------------------------------------------------------
# accepted files


def test_example_file_parses() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.charge_point.id == "CP-0001"
    assert cfg.backoffice.ocpp_version is OcppVersion.V16
    assert cfg.backoffice.security_profile == 2
    assert [c.id for c in cfg.connectors] == [1, 2]
    dc, ac = cfg.connectors
    assert dc.kind is ConnectorKind.DC and dc.dc_controller is not None
    assert ac.kind is ConnectorKind.AC and ac.dc_controller is not None  # the pilot board
    assert ac.meter.driver == "eastron_sdm630"
    assert dc.contactor.options == {"driver": "gpio_contactor", "pin": 22, "feedback_pin": 23}
    assert cfg.estop is not None and cfg.estop.options["pin"] == 17
    assert cfg.rfid is not None and cfg.rfid.driver == "serial_rfid"
    assert cfg.ocpp["HeartbeatInterval"] == 300
    assert cfg.endpoint_url == "wss://ocpp.example.com/ocpp/CP-0001"


def test_minimal_file_gets_defaults() -> None:
    cfg = parse_config(BASE, SRC)
    assert cfg.backoffice.ocpp_version == "1.6"
    assert cfg.backoffice.ping_interval_s == 10.0
    assert cfg.backoffice.reconnect_max_s == 60.0
    assert cfg.state.max_queue_bytes == 50_000_000
    assert cfg.diag.socket == "/run/evse-agent/evsectl.sock"
    assert cfg.gpio.pin_factory is None
    assert cfg.hardware.poll_interval_s == 1.0
    assert cfg.ocpp == {}
    assert cfg.rfid is None
    assert cfg.connectors[1].phases == 3
    assert cfg.connectors[1].voltage_v == 230.0
    assert cfg.connectors[0].voltage_v == 400.0  # DC default nominal
    assert cfg.charge_point.serial_number is None
    assert cfg.charge_point.firmware_version == importlib.metadata.version("evse-agent")
    assert cfg.endpoint_url == "ws://127.0.0.1:9000/ocpp/CP-1"


def test_int_accepted_for_float_keys_and_connectors_sorted_by_id() -> None:
    text = replace(BASE, "id = 1\n", "id = 2\n").replace('id = 2\nkind = "ac"', 'id = 1\nkind = "ac"')
    text = text.replace("max_current_a = 32.0", "max_current_a = 32")
    cfg = parse_config(text, SRC)
    assert [(c.id, c.kind) for c in cfg.connectors] == [(1, "ac"), (2, "dc")]
    assert cfg.connector(1).max_current_a == 32.0 and isinstance(cfg.connector(1).max_current_a, float)


# ---------------------------------------------------------------------------------------------------------
# refusals: FILE:LINE prefix and reason


def test_syntax_error_reports_tomllib_line_and_column() -> None:
    text = replace(BASE, 'vendor = "Acme"', "vendor = Acme")
    message = refusal(text)
    assert message.startswith(f"{SRC}:{line_of(text, 'vendor = Acme')}:")
    assert "invalid TOML" in message


def test_unknown_key_suggests_closest_and_lists_allowed() -> None:
    text = replace(BASE, 'url = "ws://', 'ping_intervl_s = 5\nurl = "ws://')
    message = refusal(text)
    assert message.startswith(
        f"{SRC}:{line_of(text, 'ping_intervl_s')}: backoffice.ping_intervl_s: unknown key"
    )
    assert "did you mean 'ping_interval_s'" in message
    assert "allowed keys: url, ocpp_version" in message


def test_unknown_top_level_table() -> None:
    text = BASE + "\n[hardwre]\npoll_interval_s = 2.0\n"
    message = refusal(text)
    assert message.startswith(f"{SRC}:{line_of(text, '[hardwre]')}: hardwre: unknown key")
    assert "did you mean 'hardware'" in message


@pytest.mark.parametrize(
    ("old", "new", "path", "expected"),
    [
        (
            'url = "ws://',
            'security_profile = true\nurl = "ws://',
            "backoffice.security_profile",
            "an integer",
        ),
        ("max_current_a = 32.0", "max_current_a = true", "connectors[1].max_current_a", "a number"),
        ('id = "CP-1"', "id = 1", "charge_point.id", "a string"),
        ("id = 1\n", "id = true\n", "connectors[0].id", "an integer"),
        ("id = 1\n", "id = 1.0\n", "connectors[0].id", "an integer"),
    ],
)
def test_wrong_type_bool_is_not_int(old: str, new: str, path: str, expected: str) -> None:
    text = replace(BASE, old, new)
    message = refusal(text)
    first_new_line = new.splitlines()[0]
    assert message.startswith(f"{SRC}:{line_of(text, first_new_line)}: {path}: expected {expected}, got ")


def test_ocpp_table_bool_is_not_int_and_int_is_not_bool() -> None:
    text = BASE + "\n[ocpp]\nHeartbeatInterval = true\nLocalAuthorizeOffline = 1\n"
    message = refusal(text)
    lines = message.splitlines()
    assert lines[0].startswith(
        f"{SRC}:{line_of(text, 'HeartbeatInterval')}: ocpp.HeartbeatInterval: expected an integer"
    )
    assert lines[1].startswith(
        f"{SRC}:{line_of(text, 'LocalAuthorizeOffline')}: ocpp.LocalAuthorizeOffline: expected true or false"
    )


def test_missing_required_key_points_at_table_header() -> None:
    text = BASE.replace('vendor = "Acme"\n', "")
    message = refusal(text)
    assert message == f"{SRC}:{line_of(text, '[charge_point]')}: charge_point.vendor: missing required key"


def test_missing_required_table() -> None:
    text = BASE.replace('[state]\ndirectory = "/var/lib/evse-agent"\n', "")
    assert refusal(text) == f"{SRC}: state: missing required key"


def test_missing_meter_points_at_its_connector() -> None:
    start = BASE.index("[connectors.meter]", BASE.index("id = 2"))
    end = BASE.index("[connectors.contactor]", start)
    text = BASE[:start] + BASE[end:]
    message = refusal(text)
    assert message.startswith(
        f"{SRC}:{line_of(text, '[[connectors]]', 2)}: connectors[1].meter: missing required key"
    )


def test_unknown_driver_in_second_connector() -> None:
    text = replace(BASE, 'driver = "eastron_sdm630"', 'driver = "eastron_sdm63"', occurrence=2)
    message = refusal(text)
    line = line_of(text, 'driver = "eastron_sdm63"')
    assert message.startswith(f"{SRC}:{line}: connectors[1].meter.driver: unknown driver 'eastron_sdm63'")
    assert "did you mean 'eastron_sdm630'" in message
    assert "known drivers: " in message and "modbus_dc" in message


def test_device_table_without_driver() -> None:
    text = BASE.replace('[estop]\ndriver = "gpio_estop"\n', "[estop]\n")
    message = refusal(text)
    assert message.startswith(
        f"{SRC}:{line_of(text, '[estop]')}: estop.driver: missing required key; known drivers"
    )


def test_inline_device_table_reports_its_line() -> None:
    text = BASE.replace('[estop]\ndriver = "gpio_estop"\npin = 17\n', "")
    text = replace(
        text, "max_current_a = 32.0\n", 'max_current_a = 32.0\nlock = { driver = "gpio_lok", pin = 5 }\n'
    )
    message = refusal(text)
    assert message.startswith(f"{SRC}:{line_of(text, 'gpio_lok')}: connectors[1].lock.driver: unknown driver")


def test_duplicate_connector_id() -> None:
    text = replace(BASE, "id = 2\n", "id = 1  # again\n")
    message = refusal(text)
    assert message.startswith(f"{SRC}:{line_of(text, '# again')}: connectors[1].id: duplicate connector id 1")


def test_non_contiguous_connector_ids() -> None:
    text = replace(BASE, "id = 2\n", "id = 3\n")
    message = refusal(text)
    assert message.startswith(
        f"{SRC}:{line_of(text, 'id = 3')}: connectors[1].id: connector ids must be 1..2"
    )
    assert "missing: 2" in message


def test_no_connectors() -> None:
    text = BASE[: BASE.index("[[connectors]]")]
    assert refusal(text) == f"{SRC}: connectors: at least one [[connectors]] table is required"


def test_ac_connector_accepts_a_pilot_controller() -> None:
    cfg = parse_config(BASE, SRC)
    ac = next(c for c in cfg.connectors if c.kind == "ac")
    assert ac.dc_controller is not None and ac.dc_controller.driver == "modbus_dc"


def test_dc_controller_required_on_dc_connector() -> None:
    start = BASE.index("[connectors.dc_controller]")
    end = BASE.index("[connectors.contactor]")
    text = BASE[:start] + BASE[end:]
    message = refusal(text)
    line = line_of(text, 'kind = "dc"')
    assert message.startswith(f"{SRC}:{line}: connectors[0].kind: a DC connector needs")


def test_pin_used_twice_across_the_file() -> None:
    text = replace(BASE, "feedback_pin = 27", "feedback_pin = 17")
    message = refusal(text)
    line, first = line_of(text, "feedback_pin = 17"), line_of(text, "pin = 17")
    assert message.startswith(
        f"{SRC}:{line}: connectors[1].contactor.feedback_pin: "
        f"pin 17 is already used by estop.pin (line {first})"
    )


def test_pin_spelled_as_gpio_name_is_the_same_pin() -> None:
    text = replace(BASE, "pin = 26", 'pin = "GPIO22"')
    message = refusal(text)
    assert message.startswith(f"{SRC}:{line_of(text, 'GPIO22')}: connectors[1].contactor.pin: pin 'GPIO22'")
    assert "connectors[0].contactor.pin" in message


def test_same_bus_address_used_twice() -> None:
    text = replace(BASE, "device_id = 2", "device_id = 1")
    message = refusal(text)
    line = line_of(text, 'url = "tcp://127.0.0.1:5020"', 2)
    assert message.startswith(f"{SRC}:{line}: connectors[1].meter.url:")
    assert "already used by connectors[0].meter" in message


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:9000/ocpp", "scheme must be ws:// or wss://"),
        ("127.0.0.1:9000", "scheme must be ws:// or wss://"),
        ("ws:///ocpp", "no host"),
        ("ws://127.0.0.1:9000/ocpp?x=1", "no ?query"),
        ("ws://user:pw@127.0.0.1/ocpp", "no credentials"),
        ("ws://127.0.0.1:99999/ocpp", "invalid URL"),
    ],
)
def test_bad_backoffice_url(url: str, reason: str) -> None:
    text = BASE.replace("ws://127.0.0.1:9000/ocpp", url)
    message = refusal(text)
    assert message.startswith(f"{SRC}:{line_of(text, url)}: backoffice.url: ")
    assert reason in message


def test_state_directory_must_be_absolute() -> None:
    text = BASE.replace('directory = "/var/lib/evse-agent"', 'directory = "var/lib/evse-agent"')
    line = line_of(text, "directory =")
    assert (
        refusal(text) == f"{SRC}:{line}: state.directory: must be an absolute path, got 'var/lib/evse-agent'"
    )


@pytest.mark.parametrize("cp_id", ["CP 1", "CP/1", "x" * 49, ".."])
def test_bad_charge_point_id(cp_id: str) -> None:
    text = BASE.replace('id = "CP-1"', f'id = "{cp_id}"')
    line = line_of(text, 'id = "')
    assert refusal(text).startswith(f"{SRC}:{line}: charge_point.id: ")


def test_vendor_too_long() -> None:
    text = BASE.replace('vendor = "Acme"', f'vendor = "{"A" * 21}"')
    assert (
        refusal(text)
        == f"{SRC}:{line_of(text, 'vendor')}: charge_point.vendor: longer than 20 characters (21)"
    )


def test_security_profiles_need_their_credentials() -> None:
    text = BASE.replace(
        'url = "ws://127.0.0.1:9000/ocpp"', 'url = "ws://127.0.0.1:9000/ocpp"\nsecurity_profile = 2'
    )
    message = refusal(text)
    lines = message.splitlines()
    assert lines[0].startswith(
        f"{SRC}:{line_of(text, 'url = ')}: backoffice.url: security profile 2 needs TLS"
    )
    assert lines[1].startswith(f"{SRC}:{line_of(text, 'security_profile')}: backoffice.security_profile: ")
    assert "authorization_key_file" in lines[1]
    text3 = text.replace("ws://", "wss://").replace("security_profile = 2", "security_profile = 3")
    message3 = refusal(text3)
    assert "needs client_cert_file" in message3 and "needs client_key_file" in message3
    ok = text3 + ""
    ok = ok.replace(
        "security_profile = 3",
        'security_profile = 3\nclient_cert_file = "/etc/evse-agent/c.pem"\n'
        'client_key_file = "/etc/evse-agent/k.pem"',
    )
    assert parse_config(ok, SRC).backoffice.security_profile == 3


def test_ocpp_table_refusals() -> None:
    text = BASE + (
        "\n[ocpp]\nHeartbeatIntervall = 60\nNumberOfConnectors = 2\n"
        'MeterValuesSampledData = "Energy.Active.Import.Register,Bogus"\n'
        'AuthorizationKey = "0123456789abcdef"\n'
        "HeartbeatInterval = -1\n"
    )
    lines = refusal(text).splitlines()
    assert len(lines) == 5
    assert lines[0].startswith(
        f"{SRC}:{line_of(text, 'HeartbeatIntervall')}: ocpp.HeartbeatIntervall: unknown OCPP"
    )
    assert "did you mean 'HeartbeatInterval'" in lines[0] and "known keys: " in lines[0]
    assert lines[1] == (
        f"{SRC}:{line_of(text, 'NumberOfConnectors')}: ocpp.NumberOfConnectors: "
        "readonly key: the charge point reports it, it cannot be configured"
    )
    assert lines[2].startswith(
        f"{SRC}:{line_of(text, 'Bogus')}: ocpp.MeterValuesSampledData: invalid item(s) Bogus"
    )
    assert lines[3].startswith(
        f"{SRC}:{line_of(text, 'AuthorizationKey')}: ocpp.AuthorizationKey: set from backoffice"
    )
    assert lines[4].startswith(
        f"{SRC}:{line_of(text, 'HeartbeatInterval = -1')}: ocpp.HeartbeatInterval: -1 is below"
    )


def test_every_problem_reported_sorted_by_line() -> None:
    text = BASE.replace('model = "AC22"', "model = 5").replace("max_current_a = 32.0", "max_current_a = 0")
    text = text.replace('directory = "/var/lib/evse-agent"', 'directory = "rel"')
    with pytest.raises(ConfigError) as info:
        parse_config(text, SRC)
    assert [p.split(":")[1] for p in info.value.problems] == [
        str(line_of(text, "model = 5")),
        str(line_of(text, 'directory = "rel"')),
        str(line_of(text, "max_current_a = 0")),
    ]
    assert "connectors[1].max_current_a: must be > 0, got 0" in info.value.problems[2]


def test_multiline_strings_and_quoted_keys_do_not_confuse_line_numbers() -> None:
    fake = '[[connectors]]\\nid = 9\n[connectors.meter]\ndriver = "nope"\n'
    text = replace(
        BASE, "pin = 17\n", f'pin = 17\nlabel = """\n{fake}"""\n"odd key" = \'\'\'x\n[[connectors]]\'\'\'\n'
    )
    text = replace(text, 'driver = "eastron_sdm630"', 'driver = "eastron_sdm63"', occurrence=2)
    cfg_line = line_of(text, '"eastron_sdm63"')
    message = refusal(text)
    assert message.startswith(f"{SRC}:{cfg_line}: connectors[1].meter.driver: unknown driver")


def test_load_config_errors(tmp_path: Path) -> None:
    missing = tmp_path / "none.toml"
    with pytest.raises(ConfigError, match=r"none\.toml: cannot read config file"):
        load_config(missing)
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'[charge_point]\nid = "\xff"\n')
    with pytest.raises(ConfigError, match=r"bad\.toml:2: invalid TOML: not UTF-8"):
        load_config(bad)


def test_simulator_gpio_address_and_empty_diag_group() -> None:
    text = BASE + '\n[gpio]\npin_factory = "evsesim"\nsim_address = "127.0.0.1:40535"\n[diag]\ngroup = ""\n'
    cfg = parse_config(text, SRC)
    assert cfg.gpio == GpioConfig("evsesim", "127.0.0.1:40535")
    assert cfg.diag.group == ""
    bad = text.replace('"evsesim"', '"mock"')
    line = line_of(bad, "sim_address")
    assert refusal(bad) == f'{SRC}:{line}: gpio.sim_address: only used with pin_factory = "evsesim"'
    bad = text.replace("127.0.0.1:40535", "127.0.0.1")
    assert refusal(bad) == f"{SRC}:{line}: gpio.sim_address: must be host:port, got '127.0.0.1'"


def test_gpio_pin_factory_checked() -> None:
    text = BASE + '\n[gpio]\npin_factory = "rpi"\n'
    assert refusal(text).startswith(
        f"{SRC}:{line_of(text, 'pin_factory')}: gpio.pin_factory: unknown pin factory"
    )
    assert parse_config(BASE + '\n[gpio]\npin_factory = "mock"\n', SRC).gpio == GpioConfig("mock")


# ---------------------------------------------------------------------------------------------------------
# writer


def test_round_trip_of_the_example() -> None:
    cfg = load_config(EXAMPLE)
    assert parse_config(config_to_toml(cfg), "written") == cfg


def test_round_trip_of_awkward_values(tmp_path: Path) -> None:
    cfg = AgentConfig(
        charge_point=ChargePointConfig(
            id="CP_9.x", vendor='Ac"me\\', model="Ünïcode", firmware_version="2.0"
        ),
        backoffice=BackofficeConfig(
            url="wss://h.example/ocpp/", ping_interval_s=0.0
        ),
        state=StateConfig(directory="/tmp/evse state", max_queue_bytes=1234),
        gpio=GpioConfig("evsesim"),
        ocpp={"HeartbeatInterval": 42, "LocalPreAuthorize": True, "StopTxnAlignedData": ""},
        rfid=DeviceConfig(
            "serial_rfid", {"port": "/dev/pts/3", "note": "tab\there\nnewline\x01", "odd key": 1}
        ),
        connectors=(
            ConnectorConfig(
                id=1,
                kind=ConnectorKind.AC,
                max_current_a=16.5,
                phases=1,
                voltage_v=230.0,
                free_vend_id_tag="FREE",
                meter=DeviceConfig(
                    "eastron_sdm120",
                    {
                        "url": "/dev/ttyUSB0",
                        "device_id": 3,
                        "scale": 0.1,
                        "regs": [1, 2, 3],
                        "extra": {"a": True, "b": "c"},
                    },
                ),
                contactor=DeviceConfig("gpio_contactor", {"pin": 4}),
                dc_controller=DeviceConfig("modbus_dc", {"url": "/dev/ttyUSB0", "device_id": 4}),
                lock=DeviceConfig("gpio_lock", {"pin": 5, "feedback_pin": 6}),
            ),
        ),
    )
    text = config_to_toml(cfg)
    assert parse_config(text, "written") == cfg
    target = tmp_path / "agent.toml"
    write_config(cfg, target)
    assert load_config(target) == cfg
    assert cfg.endpoint_url == "wss://h.example/ocpp/CP_9.x"


def test_writer_refuses_an_invalid_config(tmp_path: Path) -> None:
    cfg = parse_config(BASE, SRC)
    bad = dataclasses.replace(cfg, state=StateConfig(directory="relative"))
    with pytest.raises(ConfigError, match=r"state\.directory: must be an absolute path"):
        write_config(bad, tmp_path / "agent.toml")
    assert not (tmp_path / "agent.toml").exists()


def test_device_config_always_carries_driver() -> None:
    assert DeviceConfig("gpio_lock", {"pin": 5}).options == {"driver": "gpio_lock", "pin": 5}
    with pytest.raises(ValueError, match="differs"):
        DeviceConfig("gpio_lock", {"driver": "gpio_contactor"})


# ---------------------------------------------------------------------------------------------------------
# redaction


def test_redacted_hides_secret_values_only() -> None:
    text = BASE.replace("pin = 17\n", 'pin = 17\npassword = "hunter2"\napi_key = "abc"\nempty_token = ""\n')
    text = text.replace(
        'url = "ws://127.0.0.1:9000/ocpp"',
        'url = "ws://127.0.0.1:9000/ocpp"\nsecurity_profile = 1\n'
        'authorization_key_file = "/etc/evse-agent/authorization_key"',
    )
    cfg = parse_config(text, SRC)
    red = cfg.redacted()
    assert red["estop"]["password"] == "***"
    assert red["estop"]["api_key"] == "***"
    assert red["estop"]["empty_token"] == ""
    assert red["estop"]["pin"] == 17
    assert red["backoffice"]["authorization_key_file"] == "/etc/evse-agent/authorization_key"
    assert red["connectors"][0]["kind"] == "dc"
    assert red["connectors"][0]["meter"]["driver"] == "eastron_sdm630"
    assert cfg.estop is not None and cfg.estop.options["password"] == "hunter2"  # the config is untouched


# ---------------------------------------------------------------------------------------------------------
# OCPP keys


def test_measurand_list_matches_the_ocpp_library() -> None:
    from ocpp.v16.enums import Measurand

    assert {m.value for m in Measurand} == MEASURANDS_16


def test_every_default_is_a_valid_value() -> None:
    for key, spec in OCPP16_KEYS.items():
        if spec.default is not None:
            assert check_typed_value(key, spec.default) == spec.default, key


@pytest.mark.parametrize(
    ("key", "text", "value"),
    [
        ("HeartbeatInterval", " 120 ", 120),
        ("LocalAuthorizeOffline", "TRUE", True),
        ("AuthorizationCacheEnabled", "false", False),
        (
            "MeterValuesSampledData",
            "Energy.Active.Import.Register, Current.Import.L1,Voltage.L1-N",
            "Energy.Active.Import.Register,Current.Import.L1,Voltage.L1-N",
        ),
        ("StopTxnAlignedData", "", ""),
        ("ConnectorPhaseRotation", "0.RST,1.Unknown", "0.RST,1.Unknown"),
        ("AuthorizationKey", "0123456789abcdef0123", "0123456789abcdef0123"),
        ("CpoName", "Some CPO", "Some CPO"),
    ],
)
def test_validate_key_value_accepts(key: str, text: str, value: object) -> None:
    assert validate_key_value(key, text) == value


@pytest.mark.parametrize(
    ("key", "text", "reason"),
    [
        ("HeartbeatInterval", "abc", "not an integer"),
        ("HeartbeatInterval", "1.5", "not an integer"),
        ("HeartbeatInterval", "-5", "below the minimum"),
        ("TransactionMessageAttempts", "0", "below the minimum"),
        ("LocalAuthorizeOffline", "1", "not true or false"),
        ("MeterValuesSampledData", "Energy.Active.Import.Register,Power", "invalid item(s) Power"),
        ("MeterValuesSampledData", "Voltage.L4", "invalid item(s) Voltage.L4"),
        ("MeterValuesSampledData", "Voltage,,SoC", "empty item"),
        ("MeterValuesSampledData", ",".join(["Voltage"] * 21), "at most 20"),
        ("ConnectorPhaseRotation", "RST", "invalid item"),
        ("AuthorizationKey", "short", "16 to 40"),
        ("CpoName", "x" * 501, "longer than 500"),
    ],
)
def test_validate_key_value_refuses(key: str, text: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        validate_key_value(key, text)
    assert reason in str(info.value)


def test_validate_key_value_unknown_and_readonly() -> None:
    with pytest.raises(KeyError, match="NotSupported"):
        validate_key_value("NoSuchKey", "1")
    for key in (
        "NumberOfConnectors",
        "SupportedFeatureProfiles",
        "LocalAuthListMaxLength",
        "GetConfigurationMaxKeys",
    ):
        with pytest.raises(PermissionError, match="Rejected"):
            validate_key_value(key, "1")


def test_key_table_flags() -> None:
    assert OCPP16_KEYS["AuthorizationKey"].secret and not OCPP16_KEYS["AuthorizationKey"].readonly
    assert OCPP16_KEYS["SupportedFeatureProfiles"].default == (
        "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger"
    )
    assert OCPP16_KEYS["MeterValuesSampledData"].type is KeyType.CSL
    assert OCPP16_KEYS["ChargingScheduleAllowedChargingRateUnit"].readonly
    assert OCPP16_KEYS["SecurityProfile"].reboot_required
    assert format_key_value(True) == "true" and format_key_value(300) == "300"


def test_ocpp_initial_values() -> None:
    cfg = parse_config(BASE + "\n[ocpp]\nHeartbeatInterval = 60\n", SRC)
    values = cfg.ocpp_initial_values()
    assert values["HeartbeatInterval"] == 60
    assert values["NumberOfConnectors"] == 2
    assert values["MeterValueSampleInterval"] == 60
    assert values["WebSocketPingInterval"] == 10
    assert "AuthorizationKey" not in values


def _with_version(version: str) -> str:
    return BASE.replace('ocpp_version = "1.6"', f'ocpp_version = "{version}"') if 'ocpp_version = "1.6"' in BASE \
        else BASE.replace("[backoffice]\n", f'[backoffice]\nocpp_version = "{version}"\n', 1)


def test_ocpp_201_is_accepted_and_an_unknown_version_refused() -> None:
    assert parse_config(_with_version("2.0.1")).backoffice.ocpp_version is OcppVersion.V201
    assert 'must be "1.6" or "2.0.1"' in refusal(_with_version("2.1"))


def test_ac_connector_without_a_pilot_controller_is_refused() -> None:
    text = BASE.replace('[connectors.dc_controller]\ndriver = "modbus_dc"\nurl = "tcp://127.0.0.1:5020"\n'
                        'device_id = 3\n', "")
    assert text != BASE
    with pytest.raises(ConfigError) as info:
        parse_config(text, "agent.toml")
    message = str(info.value)
    assert "an AC connector needs a [connectors.dc_controller] table" in message
    line = line_of(text, 'kind = "ac"')
    assert f"agent.toml:{line}" in message, message


DC_IMD = """
[charge_point]
id = "CP-1"
vendor = "V"
model = "M"
[backoffice]
url = "ws://127.0.0.1:9000/ocpp"
[state]
directory = "/tmp/x"
[[connectors]]
id = 1
kind = "dc"
max_current_a = 200.0
{cable_check}
[connectors.meter]
driver = "eastron_sdm630"
url = "tcp://127.0.0.1:5020"
device_id = 1
[connectors.dc_controller]
driver = "modbus_dc"
url = "tcp://127.0.0.1:5021"
device_id = 1
[connectors.contactor]
driver = "gpio_contactor"
pin = 22
{imd}
"""
IMD_TABLE = '[connectors.insulation_monitor]\ndriver = "bender_isocha425hv"\nurl = "tcp://127.0.0.1:5022"\n'


def test_dc_cable_check_names_the_imd(tmp_path: Path) -> None:
    from agent.config.writer import write_config

    cfg = parse_config(DC_IMD.format(cable_check='cable_check = "imd"', imd=IMD_TABLE))
    conn = cfg.connector(1)
    assert conn.cable_check == "imd" and conn.insulation_monitor is not None
    assert conn.insulation_monitor.driver == "bender_isocha425hv"
    write_config(cfg, tmp_path / "again.toml")  # round trip keeps the table
    assert parse_config((tmp_path / "again.toml").read_text()).connector(1) == conn
    assert parse_config(DC_IMD.format(cable_check="", imd="")).connector(1).cable_check == "controller"


@pytest.mark.parametrize(("cable_check", "imd", "message"), [
    ('cable_check = "imd"', "", "needs a [connectors.insulation_monitor]"),
    ('cable_check = "vibes"', IMD_TABLE, 'must be "controller" or "imd"'),
])
def test_dc_cable_check_is_checked(cable_check: str, imd: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(DC_IMD.format(cable_check=cable_check, imd=imd))
