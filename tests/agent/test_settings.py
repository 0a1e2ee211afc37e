"""The typed settings: the 1.6 keys map onto them, changes are published by field name, measurands guarded."""

from __future__ import annotations

from pathlib import Path

from agent.config import parse_config
from agent.ocpp.v16.keys import ChangeResult, OcppKeys
from agent.settings import TX_POINTS, TX_POINTS_16, Settings, changed_fields
from agent.store import Store
from tests.agent.test_watchdog import CONFIG


def keys_for(tmp_path: Path, ocpp: str = "") -> OcppKeys:
    text = CONFIG.format(state=tmp_path / "state")
    if ocpp:
        text = text.replace("[state]", f"[ocpp]\n{ocpp}\n\n[state]")
    cfg = parse_config(text)
    Path(cfg.state.directory).mkdir(parents=True, exist_ok=True)
    return OcppKeys(cfg, Store(Path(cfg.state.directory) / "agent.db"))


def test_changed_fields_names_only_what_differs() -> None:
    old = Settings()
    new = Settings(sample_interval_s=15, sampled_measurands=("Voltage",))
    assert changed_fields(old, new) == {"sample_interval_s", "sampled_measurands"}
    assert changed_fields(old, Settings()) == frozenset()


def test_the_1_6_keys_become_typed_settings(tmp_path: Path) -> None:
    keys = keys_for(tmp_path, 'MeterValueSampleInterval = 30\nMaxEnergyOnInvalidId = 500\n'
                              'StopTxnSampledData = "Energy.Active.Import.Register, Voltage"')
    s = keys.current()
    assert s.sample_interval_s == 30
    assert s.max_energy_on_invalid_id_wh == 500.0
    assert s.ended_sampled_measurands == ("Energy.Active.Import.Register", "Voltage")
    assert s.heartbeat_interval_s == float(keys.get_int("HeartbeatInterval"))
    assert s.message_attempts == keys.get_int("TransactionMessageAttempts")


def test_a_change_is_published_by_field_name_once_accepted(tmp_path: Path) -> None:
    keys = keys_for(tmp_path)
    heard: list[frozenset[str]] = []
    keys.subscribe(heard.append)
    assert keys.change("MeterValueSampleInterval", "17") == ChangeResult.ACCEPTED
    assert heard == [frozenset({"sample_interval_s"})]
    assert keys.current().sample_interval_s == 17
    assert keys.change("MeterValueSampleInterval", "-3") == ChangeResult.REJECTED
    assert keys.current().sample_interval_s == 17 and len(heard) == 1


def test_a_measurand_check_refuses_what_cannot_be_measured(tmp_path: Path) -> None:
    keys = keys_for(tmp_path)
    keys.add_measurand_check(lambda items: [m for m in items if m == "SoC"])
    assert keys.change("MeterValuesSampledData", "Energy.Active.Import.Register,SoC") == ChangeResult.REJECTED
    assert keys.change("MeterValuesSampledData", "Energy.Active.Import.Register") == ChangeResult.ACCEPTED
    assert keys.current().sampled_measurands == ("Energy.Active.Import.Register",)


def test_the_1_6_transaction_start_and_stop_points_are_fixed(tmp_path: Path) -> None:
    """1.6 starts when authorized and plugged and stops when either ends: 2.0.1's PowerPathClosed."""
    settings = keys_for(tmp_path, "StopTransactionOnEVSideDisconnect = false").current()
    assert (settings.tx_start_point, settings.tx_stop_point) == (TX_POINTS_16, TX_POINTS_16) == (
        ("PowerPathClosed",), ("PowerPathClosed",))
    assert set(TX_POINTS_16) <= set(TX_POINTS)
