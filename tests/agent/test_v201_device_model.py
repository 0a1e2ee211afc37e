"""The 2.0.1 device model: variables on Settings, persistence, Get/SetVariables statuses, reports in parts."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import jsonschema
import ocpp
import pytest

from agent.config import parse_config
from agent.ocpp.v201.device_model import CATALOGUE, KEY_PREFIX, DeviceModel, split_report
from agent.ports import ChangeResult, ConfigVocabulary, GuardedConfig
from agent.settings import Settings, SettingsSource
from agent.store import Store
from tests.agent.test_watchdog import CONFIG

SCHEMAS = Path(ocpp.__file__).parent / "v201" / "schemas"
NOW = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def check_schema(name: str, payload: dict[str, Any]) -> None:
    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    jsonschema.validate(payload, schema)


def model_for(tmp_path: Path) -> DeviceModel:
    cfg = parse_config(CONFIG.format(state=tmp_path / "state"))
    Path(cfg.state.directory).mkdir(parents=True, exist_ok=True)
    return DeviceModel(cfg, Store(Path(cfg.state.directory) / "agent.db"), now=lambda: NOW)


def item(component: str, variable: str, value: str | None = None, *, evse: dict[str, int] | None = None,
         instance: str | None = None, attribute: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"component": {"name": component}, "variable": {"name": variable}}
    if evse is not None:
        out["component"]["evse"] = evse
    if instance is not None:
        out["variable"]["instance"] = instance
    if value is not None:
        out["attributeValue"] = value
    if attribute is not None:
        out["attributeType"] = attribute
    return out


def set_one(model: DeviceModel, *args: Any, **kwargs: Any) -> str:
    results = model.set_variables([item(*args, **kwargs)])
    check_schema("SetVariablesResponse", {"setVariableResult": results})
    return str(results[0]["attributeStatus"])


def get_one(model: DeviceModel, *args: Any, **kwargs: Any) -> dict[str, Any]:
    results = model.get_variables([item(*args, **kwargs)])
    check_schema("GetVariablesResponse", {"getVariableResult": results})
    return results[0]


def test_it_is_the_settings_source_and_the_guarded_vocabulary(tmp_path: Path) -> None:
    model = model_for(tmp_path)
    source: SettingsSource = model
    vocabulary: ConfigVocabulary = model
    guarded: GuardedConfig = model
    assert source.current() == model.current() and vocabulary and guarded


def test_the_catalogue_is_one_table_without_duplicates(tmp_path: Path) -> None:
    model = model_for(tmp_path)
    keys = [spec.key for spec in CATALOGUE]
    assert len(keys) == len(set(keys))
    assert {spec.component for spec in CATALOGUE} >= {
        "OCPPCommCtrlr", "TxCtrlr", "SampledDataCtrlr", "AlignedDataCtrlr", "AuthCtrlr", "AuthCacheCtrlr",
        "LocalAuthListCtrlr", "SmartChargingCtrlr", "ReservationCtrlr", "DeviceDataCtrlr", "ClockCtrlr",
        "SecurityCtrlr"}
    for spec in CATALOGUE:
        if spec.setting is not None:
            assert spec.setting in Settings.__dataclass_fields__, spec.key
    assert model.get_str("SecurityCtrlr.Identity") == "CP-WD"


def test_settings_from_the_defaults(tmp_path: Path) -> None:
    s = model_for(tmp_path).current()
    assert s.sample_interval_s == 60 and s.aligned_interval_s == 0
    assert s.sampled_measurands == ("Energy.Active.Import.Register",)
    assert s.ended_sampled_measurands == ()
    assert s.tx_start_point == ("PowerPathClosed",) and s.tx_stop_point == ("PowerPathClosed",)
    assert s.heartbeat_interval_s == 300.0 and s.message_attempts == 3
    assert s.auth_cache_enabled and s.local_authorize_offline and not s.local_pre_authorize
    assert s.max_energy_on_invalid_id_wh is None
    assert s.websocket_ping_interval_s == 10.0  # the config file's ping interval


def test_settings_from_set_values_published_by_field_name(tmp_path: Path) -> None:
    model = model_for(tmp_path)
    heard: list[frozenset[str]] = []
    model.subscribe(heard.append)
    results = model.set_variables([
        item("SampledDataCtrlr", "TxUpdatedInterval", "15"),
        item("AlignedDataCtrlr", "Interval", "900"),
        item("SampledDataCtrlr", "TxUpdatedMeasurands", "Energy.Active.Import.Register,Voltage"),
        item("AlignedDataCtrlr", "TxEndedMeasurands", "Energy.Active.Import.Register"),
        item("TxCtrlr", "TxStartPoint", "EVConnected,Authorized"),
        item("TxCtrlr", "TxStopPoint", "EVConnected"),
        item("AuthCtrlr", "LocalPreAuthorize", "true"),
        item("AuthCtrlr", "OfflineTxForUnknownIdEnabled", "TRUE"),
        item("AuthCacheCtrlr", "Enabled", "false"),
        item("TxCtrlr", "MaxEnergyOnInvalidId", "500"),
        item("OCPPCommCtrlr", "MessageAttempts", "5", instance="TransactionEvent"),
    ])
    check_schema("SetVariablesResponse", {"setVariableResult": results})
    assert [r["attributeStatus"] for r in results] == ["Accepted"] * len(results)
    s = model.current()
    assert s.sample_interval_s == 15 and s.aligned_interval_s == 900
    assert s.sampled_measurands == ("Energy.Active.Import.Register", "Voltage")
    assert s.ended_aligned_measurands == ("Energy.Active.Import.Register",)
    assert s.tx_start_point == ("EVConnected", "Authorized") and s.tx_stop_point == ("EVConnected",)
    assert s.local_pre_authorize and s.allow_offline_tx_for_unknown_id and not s.auth_cache_enabled
    assert s.max_energy_on_invalid_id_wh == 500.0 and s.message_attempts == 5
    assert frozenset({"sample_interval_s"}) in heard and frozenset({"tx_start_point"}) in heard
    assert get_one(model, "AuthCtrlr", "OfflineTxForUnknownIdEnabled")["attributeValue"] == "true"


def test_a_disabled_sampled_data_controller_samples_nothing(tmp_path: Path) -> None:
    model = model_for(tmp_path)
    assert set_one(model, "SampledDataCtrlr", "Enabled", "false") == "Accepted"
    s = model.current()
    assert s.sample_interval_s == 0 and s.sampled_measurands == () and s.ended_sampled_measurands == ()


def test_values_persist_across_a_new_model_on_the_same_store(tmp_path: Path) -> None:
    model = model_for(tmp_path)
    assert set_one(model, "SampledDataCtrlr", "TxUpdatedInterval", "42") == "Accepted"
    assert set_one(model, "TxCtrlr", "TxStopPoint", "EVConnected,Authorized") == "Accepted"
    rows = model._store.config_all()
    assert rows[KEY_PREFIX + "SampledDataCtrlr.TxUpdatedInterval"] == "42"
    assert not any(key.startswith("ocpp16.") for key in rows)
    again = model_for(tmp_path)
    assert again.current().sample_interval_s == 42
    assert again.current().tx_stop_point == ("EVConnected", "Authorized")


def test_read_only_is_refused_and_write_only_never_read_back(tmp_path: Path) -> None:
    model = model_for(tmp_path)
    assert set_one(model, "SmartChargingCtrlr", "ProfileStackLevel", "3") == "Rejected"
    assert set_one(model, "EVSE", "Power", "1000", evse={"id": 1}, attribute="MaxSet") == "Rejected"
    assert model.current().max_stack_level == 10
    stored: list[tuple[str, str]] = []
    model.secret_setter = lambda key, value: stored.append((key, value)) or ChangeResult.ACCEPTED
    assert set_one(model, "SecurityCtrlr", "BasicAuthPassword", "0123456789abcdefXYZ") == "Accepted"
    assert stored == [("SecurityCtrlr.BasicAuthPassword", "0123456789abcdefXYZ")]
    got = get_one(model, "SecurityCtrlr", "BasicAuthPassword")
    assert got["attributeStatus"] == "Rejected" and "attributeValue" not in got
    assert not any("BasicAuthPassword" in key for key in model._store.config_all())
    entries, _ = model.entries()
    assert all("value" not in e for e in entries if "BasicAuthPassword" in str(e["key"]))


def test_a_secret_without_a_keeper_is_rejected_and_never_logged(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    model = model_for(tmp_path)
    assert set_one(model, "SecurityCtrlr", "BasicAuthPassword", "0123456789abcdefXYZ") == "Rejected"
    assert set_one(model, "SecurityCtrlr", "BasicAuthPassword", "short-secret") == "Rejected"
    assert "short-secret" not in caplog.text and "0123456789abcdefXYZ" not in caplog.text


@pytest.mark.parametrize(("component", "variable", "value", "instance"), [
    ("SampledDataCtrlr", "TxUpdatedInterval", "-5", None),
    ("SampledDataCtrlr", "TxUpdatedInterval", "often", None),
    ("AuthCtrlr", "LocalPreAuthorize", "yes", None),
    ("TxCtrlr", "TxStartPoint", "Sunrise", None),
    ("TxCtrlr", "TxStartPoint", "", None),
    ("SampledDataCtrlr", "TxUpdatedMeasurands", "Energy.Active.Import.Register,Nonsense", None),
    ("AuthCacheCtrlr", "Policy", "LRU,LFU", None),
    ("OCPPCommCtrlr", "MessageAttempts", "0", "TransactionEvent"),
    ("SmartChargingCtrlr", "LimitChangeSignificance", "nan", None),
])
def test_a_bad_value_is_rejected(tmp_path: Path, component: str, variable: str, value: str,
                                 instance: str | None) -> None:
    model = model_for(tmp_path)
    before = model.current()
    assert set_one(model, component, variable, value, instance=instance) == "Rejected"
    assert model.current() == before


def test_reboot_required_where_it_applies(tmp_path: Path) -> None:
    model = model_for(tmp_path)
    assert set_one(model, "OCPPCommCtrlr", "NetworkConfigurationPriority", "1,0") == "RebootRequired"
    assert model.get_str("OCPPCommCtrlr.NetworkConfigurationPriority") == "1,0"
    assert set_one(model, "OCPPCommCtrlr", "HeartbeatInterval", "120") == "Accepted"


def test_unknown_component_variable_and_attribute(tmp_path: Path) -> None:
    model = model_for(tmp_path)
    assert get_one(model, "FluxCapacitorCtrlr", "Enabled")["attributeStatus"] == "UnknownComponent"
    assert get_one(model, "EVSE", "Power", evse={"id": 9})["attributeStatus"] == "UnknownComponent"
    assert get_one(model, "TxCtrlr", "Warp")["attributeStatus"] == "UnknownVariable"
    assert get_one(model, "TxCtrlr", "TxStartPoint", attribute="MaxSet")["attributeStatus"] == \
        "NotSupportedAttributeType"
    assert set_one(model, "FluxCapacitorCtrlr", "Enabled", "true") == "UnknownComponent"
    assert set_one(model, "TxCtrlr", "Warp", "1") == "UnknownVariable"
    assert set_one(model, "TxCtrlr", "StopTxOnInvalidId", "true", attribute="Target") == "NotSupportedAttributeType"
    assert model.change("TxCtrlr.Warp", "1") == ChangeResult.NOT_SUPPORTED


def test_the_station_evse_and_connector_come_from_the_config(tmp_path: Path) -> None:
    model = model_for(tmp_path)
    power = get_one(model, "EVSE", "Power", evse={"id": 1}, attribute="MaxSet")
    assert power["attributeStatus"] == "Accepted" and power["attributeValue"] == "11040"  # 16 A x 230 V x 3
    conn = get_one(model, "Connector", "ConnectorType", evse={"id": 1, "connectorId": 1})
    assert conn["attributeValue"] == "sType2"
    assert get_one(model, "ChargingStation", "Model")["attributeValue"] == "Watchdog"
    assert get_one(model, "chargingstation", "vendorname")["attributeValue"] == "Test"  # names are case-insensitive
    assert get_one(model, "ClockCtrlr", "DateTime")["attributeValue"] == "2025-01-02T03:04:05Z"
    model.set_local("EVSE[1].AvailabilityState", "Occupied")
    assert model.get_str("EVSE[1].AvailabilityState") == "Occupied"


def test_the_measurand_guard(tmp_path: Path) -> None:
    model = model_for(tmp_path)
    model.add_measurand_check(lambda items: [m for m in items if m == "SoC"])
    assert set_one(model, "SampledDataCtrlr", "TxUpdatedMeasurands", "Energy.Active.Import.Register,SoC") == "Rejected"
    assert set_one(model, "AlignedDataCtrlr", "Measurands", "SoC") == "Rejected"
    assert set_one(model, "SampledDataCtrlr", "TxUpdatedMeasurands", "Voltage") == "Accepted"
    assert model.current().sampled_measurands == ("Voltage",)


def test_the_vocabulary_names(tmp_path: Path) -> None:
    model = model_for(tmp_path)
    assert model.change("SampledDataCtrlr.TxUpdatedInterval", "30") == ChangeResult.ACCEPTED
    assert model.get_int("SampledDataCtrlr.TxUpdatedInterval") == 30
    assert model.get_int("EVSE[1].Power@MaxSet") == 0  # a decimal is not an int
    assert model.get_bool("TxCtrlr.StopTxOnInvalidId") is True
    known, unknown = model.entries(["EVSE[1].Power@MaxSet", "OCPPCommCtrlr.MessageAttempts[TransactionEvent]",
                                    "Nope.Nothing"])
    assert known[0] == {"key": "EVSE[1].Power@MaxSet", "readonly": True, "value": "11040"}
    assert known[1]["value"] == "3" and unknown == ["Nope.Nothing"]
    heard: list[str] = []
    model.listeners.append(heard.append)
    model.set_local("SmartChargingCtrlr.LimitChangeSignificance", "0.2")
    assert heard == ["SmartChargingCtrlr.LimitChangeSignificance"]
    with pytest.raises(ValueError):
        model.set_local("SampledDataCtrlr.TxUpdatedInterval", -1)


def test_reports_are_valid_and_split_by_items_per_message(tmp_path: Path) -> None:
    model = model_for(tmp_path)
    full = model.base_report("FullInventory")
    config_inv = model.base_report("ConfigurationInventory")
    summary = model.base_report("SummaryInventory")
    assert len(config_inv) < len(full) and 0 < len(summary) < len(config_inv)
    assert all(a["mutability"] != "ReadOnly" for d in config_inv for a in d["variableAttribute"][:1])
    password = next(d for d in full if d["variable"]["name"] == "BasicAuthPassword")
    assert "value" not in password["variableAttribute"][0]
    parts = model.report_parts(7, full)
    per_message = model.get_int("DeviceDataCtrlr.ItemsPerMessage[GetReport]")
    assert len(parts) == -(-len(full) // per_message) > 1
    assert [p["seqNo"] for p in parts] == list(range(len(parts)))
    assert [p["tbc"] for p in parts] == [True] * (len(parts) - 1) + [False]
    assert sum(len(p["reportData"]) for p in parts) == len(full)
    for part in parts + split_report(8, summary, 2, "2025-01-02T03:04:05Z"):
        check_schema("NotifyReportRequest", part)
    assert split_report(9, [], 10, "2025-01-02T03:04:05Z") == []


def test_get_report_filters(tmp_path: Path) -> None:
    model = model_for(tmp_path)
    evse = model.report([{"component": {"name": "EVSE", "evse": {"id": 1}}}])
    assert {d["variable"]["name"] for d in evse} == {"AvailabilityState", "Available", "Power", "SupplyPhases"}
    one = model.report([{"component": {"name": "TxCtrlr"}, "variable": {"name": "TxStartPoint"}}])
    assert len(one) == 1 and one[0]["variableCharacteristics"]["dataType"] == "MemberList"
    attempts = model.report([{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "MessageAttempts"}}])
    assert [d["variable"].get("instance") for d in attempts] == ["TransactionEvent"]
    enabled = model.report(component_criteria=["Enabled"])
    assert {d["component"]["name"] for d in enabled} >= {"AuthCacheCtrlr", "SampledDataCtrlr"}
    assert "OCPPCommCtrlr" not in {d["component"]["name"] for d in enabled}  # it has no Enabled variable
    assert set_one(model, "ReservationCtrlr", "Enabled", "false") == "Accepted"
    assert "ReservationCtrlr" not in {d["component"]["name"] for d in model.report(component_criteria=["Enabled"])}
    available = model.report(component_criteria=["Available"])
    assert {d["component"]["name"] for d in available} == {"ChargingStation", "EVSE", "Connector"}
    assert model.report([{"component": {"name": "Nothing"}}]) == []
    for part in model.report_parts(3, evse + enabled):
        check_schema("NotifyReportRequest", part)


def test_every_catalogue_variable_is_documented_with_its_meaning() -> None:
    from agent.ocpp.v201.device_model import CATALOGUE

    doc = (Path(__file__).resolve().parents[2] / "docs" / "ocpp201.md").read_text()
    rows = {line.split("|")[1].strip().strip("`") for line in doc.splitlines() if line.startswith("| `")}
    missing = [f"{v.component}.{v.variable}" + (f"[{v.variable_instance}]" if v.variable_instance else "")
               for v in CATALOGUE]
    missing = [key for key in missing if key not in rows]
    assert missing == [], f"docs/ocpp201.md does not describe {missing}"
