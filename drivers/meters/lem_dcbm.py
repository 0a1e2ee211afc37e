"""The LEM DCBM 400/600 DC energy meter over its HTTP/JSON API (v1, the paths under /v1; docs/meters.md).

Live values come from `GET /v1/livemeasure` and pass the same plausibility check as every meter
(drivers/meters/plausibility.py). A legal transaction is `POST /v1/legal` (begin) and
`PUT /v1/legal?transactionId=...` with `{"running": false}` (end); the signed OCMF data set of a transaction
is `GET /v1/ocmf?transactionId=...`, a logbook entry `GET /v1/ocmf/{index}`; the meter's id, public key
and state come from `GET /v1/status`; its clock is set with `PUT /v1/settings` (the meter refuses legal
transactions once its time has not been set for 48 h). Every signed data set is parsed, its serial,
readings and signature checked against the meter's key before the caller sees it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

from drivers.base import LegalTransaction, MeterCapabilities, MeterReading, SignedMeterValue, now_stamps
from drivers.errors import CommunicationFault, ConfigError, ImplausibleReading
from drivers.http import HttpClient, HttpFault, HttpResponse
from drivers.meters import ocmf
from drivers.meters.plausibility import MeterLimits, Plausibility, PlausibleMeterMixin

LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

OPTIONS = ("driver", "url", "timeout_s")
DEFAULT_TIMEOUT_S = 2.0  # the meter's web server answers in tens of ms; a signing request takes longer
DCBM_NOMINAL_V = 1000.0  # the DCBM measures up to 1000 V DC
DCBM_MAX_CURRENT_A = 600.0  # the DCBM 600 model; the agent narrows both to the connector with configure_limits
TIME_SYNC_INTERVAL_S = 3600.0  # well inside the meter's 48 h, so a long session never outlives its clock
STATUS_RUNNING_BIT = 0b100  # transactionStatus / status value bit "transactionIsOnGoing"
LIVE_FIELDS = ("voltage", "current", "power", "energyImportTotal", "energyExportTotal")
CAPABILITIES = MeterCapabilities(phases=1, export_energy=True, per_phase_power=False, signed=True)


class LemDcbm(PlausibleMeterMixin):
    """A SignedMeter: the LEM DCBM 400/600 over HTTP."""

    def __init__(self, name: str, client: HttpClient) -> None:
        self.name = name
        self.client = client
        self.capabilities: MeterCapabilities = CAPABILITIES
        self.plausibility = Plausibility(
            name, MeterLimits(nominal_voltage_v=DCBM_NOMINAL_V, phases=1, max_current_a=DCBM_MAX_CURRENT_A),
            resolution_wh=1.0)
        self.meter_id: str | None = None
        self._public_key: str | None = None
        self._last: MeterReading | None = None
        self._failed = False
        self._closed = False
        self._implausible: dict[str, int] = {}
        self._synced_monotonic: float | None = None
        self._signed_high_wh: float | None = None  # highest register value seen in a new signed data set

    @classmethod
    def from_config(cls, name: str, options: dict[str, Any], pool: object = None) -> LemDcbm:
        """Build the meter from its config section (`pool` is the Modbus bus pool, unused over HTTP)."""
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ConfigError(name, f"unknown option(s) {', '.join(unknown)}; allowed: {', '.join(OPTIONS)}")
        url = options.get("url")
        if not isinstance(url, str):
            raise ConfigError(name, "option 'url' is required (http://host[:port])")
        timeout_s = options.get("timeout_s", DEFAULT_TIMEOUT_S)
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0 < timeout_s <= 60:
            raise ConfigError(name, f"timeout_s must be a number of seconds in (0, 60], not {timeout_s!r}")
        return cls(name, HttpClient(name, url, float(timeout_s)))

    # ---- EnergyMeter ------------------------------------------------------------------------------

    def configure_limits(self, nominal_voltage_v: float = DCBM_NOMINAL_V, phases: int | None = None,
                         max_current_a: float = DCBM_MAX_CURRENT_A) -> None:
        """Set the metered connector's bounds (a DC meter has one 'phase': the DC link)."""
        self.plausibility.limits = MeterLimits(nominal_voltage_v=float(nominal_voltage_v), phases=1,
                                               max_current_a=float(max_current_a))

    def error_counts(self) -> dict[str, int]:
        """Failed requests by kind (timeout, io_error, framing, oversized, http_status, garbage, implausible)."""
        return self.client.error_counts()

    def communication_errors(self) -> int:
        """Failed requests (timeouts, I/O errors, refused or oversized answers, bad statuses, garbage); a
        well-formed but implausible answer is not one."""
        return sum(n for kind, n in self.client.error_counts().items() if kind != "implausible")

    def accept_baseline(self) -> None:
        """Re-baseline a replaced or reset meter; the signed registers start over too."""
        super().accept_baseline()
        self._signed_high_wh = None

    def last_reading(self) -> MeterReading | None:
        """The last good reading; marked stale when the latest request failed."""
        if self._last is None:
            return None
        return dataclasses.replace(self._last, stale=True) if self._failed else self._last

    async def read(self) -> MeterReading:
        """Read the live values and check plausibility; raise DeviceTimeout, HttpFault or ImplausibleReading."""

        async def once() -> MeterReading:
            return self._live(await self._json("GET", "/v1/livemeasure"))

        async def checked() -> MeterReading:
            reading = await once()
            if self.plausibility.needs_confirmation:
                first, reading = reading, await once()
                self.plausibility.confirm(first, reading)
            else:
                self.plausibility.check(reading)
            return reading

        reading = await self._guard(checked())
        self._last = reading
        return reading

    async def close(self) -> None:
        """Stop using the meter (each request opens its own connection, so there is nothing to close)."""
        self._closed = True

    # ---- SignedMeter ------------------------------------------------------------------------------

    async def public_key(self) -> str:
        """The meter's OCMF public key (hex DER SubjectPublicKeyInfo), read from /v1/status once."""
        await self._guard(self._identify())
        assert self._public_key is not None
        return self._public_key

    async def open_transaction(self) -> bool:
        """Whether the meter holds a legal transaction open (its status bit transactionIsOnGoing)."""

        async def ask() -> bool:
            status = await self._status()
            bits = _field(self.name, status, "status", dict)
            return bool(_field(self.name, bits.get("bits", {}), "transactionIsOnGoing", bool))

        return await self._guard(ask())

    async def begin_transaction(self, transaction: LegalTransaction) -> SignedMeterValue | None:
        """Sync the meter's clock, start its legal transaction and return the signed begin data set (or None)."""

        async def begin() -> SignedMeterValue | None:
            await self._identify()
            await self._sync_time()
            body = {"evseId": transaction.evse_id, "transactionId": transaction.transaction_id,
                    "clientId": transaction.client_id, "tariffId": transaction.tariff_id,
                    "cableId": transaction.cable_id, "userData": transaction.user_data}
            answer = await self._json("POST", "/v1/legal", body, expect=201)
            if answer.get("running") is not True or answer.get("transactionId") != transaction.transaction_id:
                raise self._implausible_answer("legal", f"POST /v1/legal answered {_short(answer)}")
            record = await self._ocmf(transaction.transaction_id)
            if record is None:
                return None  # this firmware signs the whole transaction only at its end
            if record.begin_wh is None:
                raise self._implausible_answer("ocmf", "the begin data set holds no begin (TX=B) reading")
            self._check_new(record)
            return record

        return await self._guard(begin())

    async def end_transaction(self, transaction_id: str) -> SignedMeterValue:
        """End the meter's legal transaction and return the signed data set covering it (begin and end)."""

        async def end() -> SignedMeterValue:
            await self._identify()
            path = self.client.query("/v1/legal", transactionId=transaction_id)
            try:
                answer = await self._json("PUT", path, {"running": False})
            except HttpFault as err:
                # An earlier end whose answer was lost has ended it already: the meter's record says so.
                if err.kind != "http_status":
                    raise
                record = await self._ocmf(transaction_id)
                if record is None or record.end_wh is None:
                    raise
                LOGGER.info("%s: transaction %s was already ended; using the meter's record", self.name,
                            transaction_id)
                self._check_new(record)
                return record
            meter_value = _field(self.name, answer, "meterValue", dict)
            status = _field(self.name, meter_value, "transactionStatus", int)
            if status & STATUS_RUNNING_BIT:
                raise self._implausible_answer("legal", f"transaction {transaction_id} still running "
                                                        f"(status {status}) after the end request")
            record = await self._ocmf(transaction_id)
            if record is None or record.end_wh is None:
                raise self._implausible_answer("ocmf", f"no signed end data set for transaction {transaction_id}")
            self._check_new(record)
            return record

        return await self._guard(end())

    async def transaction_record(self, transaction_id: str) -> SignedMeterValue | None:
        """The meter's own signed record of a transaction (e.g. one a power cut interrupted), or None."""

        async def fetch() -> SignedMeterValue | None:
            await self._identify()
            return await self._ocmf(transaction_id)

        return await self._guard(fetch())

    async def last_transaction(self) -> SignedMeterValue | None:
        """The signed record of the meter's most recent transaction in its logbook, or None when it has none."""

        async def fetch() -> SignedMeterValue | None:
            await self._identify()
            status = await self._status()
            stored = _field(self.name, status, "numberOfStoredTransactions", int)
            index = _field(self.name, status, "indexOfLastTransaction", int)
            if stored <= 0:
                return None
            if index < 0:
                raise self._implausible_answer("status", f"indexOfLastTransaction {index}")
            response = await self._request("GET", f"/v1/ocmf/{index}")
            if response.status == 404:
                return None
            return self._record(self._text(response), None)

        return await self._guard(fetch())

    # ---- internals --------------------------------------------------------------------------------

    async def _guard(self, work: Coroutine[Any, Any, T]) -> T:
        """Run a request sequence: count and log an implausible answer; any failure marks readings stale."""
        if self._closed:
            work.close()
            raise CommunicationFault(self.name, "meter is closed")
        try:
            result: T = await work
        except ImplausibleReading as err:
            self._failed = True
            self._implausible[err.reason] = self._implausible.get(err.reason, 0) + 1
            self.client.count("implausible")
            LOGGER.warning("%s: answer refused: %s", self.name, err.message)
            raise
        except Exception:
            self._failed = True
            raise
        self._failed = False
        return result

    def _implausible_answer(self, reason: str, message: str) -> ImplausibleReading:
        return ImplausibleReading(self.name, reason, message)

    async def _request(self, method: str, path: str, body: Any = None) -> HttpResponse:
        return await self.client.request(method, path, body)

    async def _json(self, method: str, path: str, body: Any = None, expect: int = 200) -> dict[str, Any]:
        response = await self._request(method, path, body)
        if response.status != expect:
            self.client.count("http_status")
            raise HttpFault(self.name, "http_status", f"{method} {path} answered HTTP {response.status}",
                            response.status)
        try:
            answer = response.json(self.name)
        except HttpFault:
            self.client.count("garbage")
            raise
        if not isinstance(answer, dict):
            self.client.count("garbage")
            raise HttpFault(self.name, "garbage", f"{method} {path} answered {type(answer).__name__}, not an object")
        return answer

    def _text(self, response: HttpResponse) -> str:
        if response.status != 200:
            self.client.count("http_status")
            raise HttpFault(self.name, "http_status", f"OCMF request answered HTTP {response.status}",
                            response.status)
        try:
            return response.body.decode("utf-8").strip()
        except UnicodeDecodeError:
            self.client.count("garbage")
            raise HttpFault(self.name, "garbage", "OCMF answer is not UTF-8") from None

    async def _status(self) -> dict[str, Any]:
        status = await self._json("GET", "/v1/status")
        meter_id = _field(self.name, status, "meterId", str)
        if self.meter_id is not None and meter_id != self.meter_id:
            raise self._implausible_answer("meter_changed", f"meter id changed from {self.meter_id} to {meter_id}")
        return status

    async def _identify(self) -> None:
        """Learn the meter's id and public key once; a meter with a different id later is refused."""
        if self._public_key is not None:
            return
        status = await self._status()
        meter_id = _field(self.name, status, "meterId", str)
        if not meter_id or len(meter_id) > 64:
            raise self._implausible_answer("status", f"meter id {meter_id[:70]!r}")
        key = ocmf.load_public_key(self.name, _field(self.name, status, "publicKeyOcmf", str))
        self.meter_id, self._public_key = meter_id, key
        LOGGER.info("%s: LEM DCBM %s, OCMF public key %s", self.name, meter_id, key)

    async def _sync_time(self) -> None:
        """Set the meter's clock from ours (UTC) unless it was set within TIME_SYNC_INTERVAL_S."""
        now = time.monotonic()
        if self._synced_monotonic is not None and now - self._synced_monotonic < TIME_SYNC_INTERVAL_S:
            return
        utc = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        answer = await self._json("PUT", "/v1/settings", {"time": {"utc": utc}})
        if answer.get("result") != 1:
            raise self._implausible_answer("settings", f"time not accepted: {_short(answer)}")
        self._synced_monotonic = now

    async def _ocmf(self, transaction_id: str) -> SignedMeterValue | None:
        response = await self._request("GET", self.client.query("/v1/ocmf", transactionId=transaction_id))
        if response.status == 404:
            return None
        return self._record(self._text(response), transaction_id)

    def _record(self, text: str, transaction_id: str | None) -> SignedMeterValue:
        """Check a data set (format, serial, signature) and wrap it with the key it verifies with."""
        assert self._public_key is not None
        parsed = ocmf.parse(self.name, text)
        if parsed.meter_serial != self.meter_id:
            raise self._implausible_answer("ocmf", f"data set signed by meter {parsed.meter_serial[:70]!r}, "
                                                   f"not {self.meter_id}")
        if not ocmf.verify(parsed, self._public_key):
            raise self._implausible_answer("signature", "the data set's signature does not verify with the meter's key")
        read_monotonic, read_wall = now_stamps()
        return SignedMeterValue(data=parsed.text, encoding="OCMF", signing_method=ocmf.SIGNING_METHOD,
                                public_key=self._public_key, transaction_id=transaction_id,
                                begin_wh=parsed.begin_wh, end_wh=parsed.end_wh,
                                read_monotonic=read_monotonic, read_wall=read_wall)

    def _check_new(self, record: SignedMeterValue) -> None:
        """A new transaction's signed energy never goes below what an earlier one signed (register backwards)."""
        first = record.begin_wh if record.begin_wh is not None else record.end_wh
        last = record.end_wh if record.end_wh is not None else record.begin_wh
        high = self._signed_high_wh
        if first is not None and high is not None and first < high:
            raise self._implausible_answer(
                "energy_backwards", f"signed register {first:.0f} Wh is below {high:.0f} Wh signed before")
        if last is not None:
            self._signed_high_wh = last if high is None else max(high, last)

    def _live(self, answer: dict[str, Any]) -> MeterReading:
        """A reading from /v1/livemeasure (energies in Wh, as EVerest's module reads them; V, A, W)."""
        values: dict[str, float] = {}
        for key in LIVE_FIELDS:
            value = answer.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise self._implausible_answer("not_available", f"livemeasure {key} is {_short(value)}")
            if not math.isfinite(value):
                raise self._implausible_answer("not_finite", f"livemeasure {key} is {value}")
            values[key] = float(value)
        read_monotonic, read_wall = now_stamps()
        return MeterReading(
            energy_import_wh=values["energyImportTotal"],
            energy_export_wh=values["energyExportTotal"],
            power_w=values["power"],
            voltage_v=(values["voltage"],),
            current_a=(values["current"],),
            read_monotonic=read_monotonic,
            read_wall=read_wall,
        )


def _field(device: str, obj: Any, key: str, kind: type) -> Any:
    """obj[key] if obj is a dict and the value has the type; else ImplausibleReading (never a KeyError)."""
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ImplausibleReading(device, "field", f"{key} is {_short(value)}, expected {kind.__name__}")
    return value


def _short(value: Any) -> str:
    return repr(value)[:80]
