"""A simulated LEM DCBM 400/600: the meter's HTTP/JSON API (v1) on a real socket, signing OCMF data sets with
its own ECDSA secp256r1 key through the drivers' OCMF codec (drivers/meters/ocmf.py).

Faults are switches the driver tests are parametrised over: `silent` (accepts, never answers), `slow_s`,
`http_500`, `garbage` (200 with a body that is not JSON), `oversized` (a body far beyond any real answer),
`backwards` (live energy BACKWARDS_WH low), `stuck` (live values frozen), `bad_signature` (one byte of
every signature flipped). `power_cut()` models the meter losing its supply during a transaction: at power-up
it closes the transaction by itself with an end reading of reason P (power failure), as OCMF allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from cryptography.hazmat.primitives.asymmetric import ec

from drivers.meters import ocmf

LOGGER = logging.getLogger(__name__)

BACKWARDS_WH = 1000.0  # a "backwards" meter reports this much less: clearly a fault
OVERSIZED_BYTES = 1 << 20  # 1 MiB of JSON-looking padding, far past the driver's body bound
MAX_REQUEST_BYTES = 64 * 1024
TIME_VALID_S = 48 * 3600.0  # the meter's time counts as synchronised this long after it was set
METER_ID = "LEMSIM000001"
FIRMWARE = "1.4.0-sim"


@dataclass
class SimLemFaults:
    """Switches a test flips; all off means a healthy meter."""

    silent: bool = False
    slow_s: float = 0.0
    http_500: bool = False
    garbage: bool = False
    oversized: bool = False
    bad_signature: bool = False


@dataclass
class LegalRecord:
    """One transaction in the meter's logbook."""

    transaction_id: str
    evse_id: str
    client_id: str
    tariff_id: int
    cable_id: int
    user_data: str
    begin: ocmf.OcmfReading
    begin_pagination: int
    begin_ocmf: str
    end: ocmf.OcmfReading | None = None
    end_pagination: int = 0
    end_ocmf: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        """True until the transaction has its end reading."""
        return self.end is None


class SimLemDcbm:
    """The meter's state, its logbook and its HTTP server; `add_energy` is what the physics loop calls."""

    def __init__(self, meter_id: str = METER_ID) -> None:
        self.meter_id = meter_id
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.public_key_hex = ocmf.public_key_hex(self.key.public_key())
        self.faults = SimLemFaults()
        self.voltage_v = 0.0
        self.current_a = 0.0
        self.power_w = 0.0
        self.energy_import_wh = 4_200_000.0  # 4200 kWh: a meter in service for a while
        self.energy_export_wh = 0.0
        self.stuck = False
        self.backwards = False
        self.records: list[LegalRecord] = []
        self.pagination = 0  # the transaction context's counter: PG "T<n>", incremented after each data set
        self.time_set_wall: float | None = None
        self.produced: list[str] = []  # every data set this meter signed, in order (for the tests' verifier)
        self._frozen: dict[str, Any] | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # ---- physics -----------------------------------------------------------------------------------

    def set_dc(self, voltage_v: float, current_a: float) -> None:
        """Set the DC link's voltage and current (power follows)."""
        self.voltage_v, self.current_a = float(voltage_v), float(current_a)
        self.power_w = self.voltage_v * self.current_a

    def add_energy(self, power_w_per_phase: list[float], dt_s: float) -> None:
        """Run at the given power (the sum of the entries; a DC meter has one) for dt_s."""
        total_w = sum(power_w_per_phase)
        if total_w >= 0:
            self.energy_import_wh += total_w * dt_s / 3600.0
        else:
            self.energy_export_wh += -total_w * dt_s / 3600.0

    def update(self) -> None:
        """Nothing to encode: the HTTP answers are built from the state when asked."""

    def register_energy_wh(self) -> float:
        """The import energy as the meter signs it (1 Wh resolution).

        Whole Wh delivered, never rounded up: a billing register does not count energy that has not flowed
        yet, and its signed value must agree with the live reading's whole Wh (an unsigned session billed from
        the live value and a signed one meet at the same Wh).
        """
        return float(math.floor(self.energy_import_wh + 1e-9))

    # ---- legal transactions ------------------------------------------------------------------------

    def _time_status(self, wall: float) -> str:
        synced = self.time_set_wall is not None and 0 <= wall - self.time_set_wall <= TIME_VALID_S
        return "S" if synced else "U"

    def _reading(self, reason: str) -> ocmf.OcmfReading:
        wall = time.time()
        return ocmf.OcmfReading(wall=wall, time_status=self._time_status(wall), reason=reason,
                                energy_wh=float(self.register_energy_wh()))

    def _sign(self, record: LegalRecord, readings: list[ocmf.OcmfReading], pagination: int) -> str:
        identified = bool(record.client_id)
        fields: dict[str, Any] = {
            "FV": ocmf.FORMAT_VERSION, "GI": "LEM DCBM 400-600", "GS": self.meter_id, "GV": FIRMWARE,
            "PG": f"T{pagination}", "MV": "LEM", "MM": "DCBM 400-600", "MS": self.meter_id, "MF": FIRMWARE,
            # The meter only hears the id from the station over HTTP: assigned, but on the station's word.
            "IS": identified, "IL": "HEARSAY" if identified else "NONE", "IF": [],
            "IT": "UNDEFINED" if identified else "NONE",
        }
        if identified:
            fields["ID"] = record.client_id
        fields["TT"] = f"tariff {record.tariff_id}"
        fields["CT"] = "EVSEID"
        fields["CI"] = record.evse_id
        text = ocmf.sign(ocmf.build_payload(fields, readings), self.key)
        self.produced.append(text)
        return text

    def begin(self, body: dict[str, Any]) -> LegalRecord:
        """Open a legal transaction and sign its begin data set."""
        begin = self._reading("B")
        record = LegalRecord(
            transaction_id=str(body["transactionId"]), evse_id=str(body.get("evseId", "")),
            client_id=str(body.get("clientId", "")), tariff_id=int(body.get("tariffId", 0)),
            cable_id=int(body.get("cableId", 0)), user_data=str(body.get("userData", "")),
            begin=begin, begin_pagination=self.pagination, begin_ocmf="",
        )
        record.begin_ocmf = self._sign(record, [begin], self.pagination)
        self.pagination += 1
        self.records.append(record)
        return record

    def end(self, record: LegalRecord, reason: str = "E") -> None:
        """Close a legal transaction and sign the data set covering it (its begin and end readings)."""
        record.end = self._reading(reason)
        record.end_pagination = self.pagination
        record.end_ocmf = self._sign(record, [record.begin, record.end], self.pagination)
        self.pagination += 1

    def running(self) -> LegalRecord | None:
        """The open transaction, if any."""
        return next((r for r in self.records if r.running), None)

    def power_cut(self) -> None:
        """Lose and regain the supply: an open transaction is closed by the meter with reason P."""
        record = self.running()
        if record is not None:
            self.end(record, reason="P")
        self.voltage_v = self.current_a = self.power_w = 0.0

    def find(self, transaction_id: str) -> LegalRecord | None:
        """The newest record filed under a transaction id."""
        return next((r for r in reversed(self.records) if r.transaction_id == transaction_id), None)

    # ---- faults ------------------------------------------------------------------------------------

    def set_fault(self, fault: str, on: bool, value: Any = None) -> None:
        """Switch a fault by name (the simulator's control API and the tests use the same names)."""
        if fault == "slow":
            self.faults.slow_s = float(value or 2.0) if on else 0.0
        elif fault in ("silent", "http_500", "garbage", "oversized", "bad_signature"):
            setattr(self.faults, fault, on)
        elif fault == "stuck":
            self._frozen = self._live() if on else None  # the answers stop following the state
            self.stuck = on
        elif fault == "backwards":
            self.backwards = on
        elif fault == "power_cut" and on:
            self.power_cut()
        else:
            raise ValueError(f"unknown LEM DCBM fault {fault!r}")

    # ---- HTTP API ----------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen and return the base URL (http://host:port)."""
        self._server = await asyncio.start_server(self._serve, host, port)
        bound = self._server.sockets[0].getsockname()[1]
        return f"http://{host}:{bound}"

    async def stop(self) -> None:
        """Stop listening and drop open connections."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            request_line = (await reader.readline()).decode("latin-1")
            method, target, _ = request_line.split(" ", 2)
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if length > MAX_REQUEST_BYTES:
                raise ValueError("request body too large")
            raw = await reader.readexactly(length) if length else b""
            if self.faults.silent:
                await asyncio.sleep(3600)  # a hung web server: the connection stays open, nothing comes back
            if self.faults.slow_s:
                await asyncio.sleep(self.faults.slow_s)
            status, content_type, body = self._dispatch(method, target, raw)
            head = (f"HTTP/1.1 {status} {'OK' if status < 300 else 'Error'}\r\nContent-Type: {content_type}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
            writer.write(head.encode() + body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    def _dispatch(self, method: str, target: str, raw: bytes) -> tuple[int, str, bytes]:
        if self.faults.http_500:
            return 500, "application/json", b'{"error":"internal error"}'
        if self.faults.oversized:
            return 200, "application/json", b'{"pad":"' + b"x" * OVERSIZED_BYTES + b'"}'
        if self.faults.garbage:
            return 200, "application/json", b'{"voltage": 4\x00\xff<html>'
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query))
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return 400, "application/json", b'{"error":"bad JSON"}'
        path = parts.path
        if method == "GET" and path == "/v1/status":
            return self._json(200, self._status())
        if method == "GET" and path == "/v1/livemeasure":
            return self._json(200, self._frozen if self.stuck and self._frozen else self._live())
        if method == "PUT" and path == "/v1/settings":
            utc = body.get("time", {}).get("utc") if isinstance(body, dict) else None
            if not isinstance(utc, str):
                return self._json(400, {"error": "time.utc missing"})
            self.time_set_wall = datetime.fromisoformat(utc).timestamp()
            return self._json(200, {"meterId": self.meter_id, "result": 1})
        if method == "POST" and path == "/v1/legal":
            if not isinstance(body, dict) or not isinstance(body.get("transactionId"), str):
                return self._json(400, {"error": "transactionId missing"})
            if self.running() is not None:
                return self._json(409, {"error": "a transaction is already running"})
            began = self.begin(body)
            return self._json(201, {"evseId": began.evse_id, "transactionId": began.transaction_id,
                                    "clientId": began.client_id, "tariffId": began.tariff_id,
                                    "cableId": began.cable_id, "running": True})
        record: LegalRecord | None
        if method == "PUT" and path == "/v1/legal":
            record = self.find(query.get("transactionId", ""))
            if record is None:
                return self._json(404, {"error": "no such transaction"})
            if not isinstance(body, dict) or body.get("running") is not False:
                return self._json(400, {"error": "only running=false is supported"})
            if not record.running:
                return self._json(409, {"error": "transaction already ended"})
            self.end(record)
            return self._json(200, self._legal_answer(record))
        if method == "GET" and path == "/v1/ocmf":
            wanted = query.get("transactionId")
            record = self.find(wanted) if wanted is not None else (self.records[-1] if self.records else None)
            if record is None:
                return 404, "application/json", b'{"error":"no such transaction"}'
            return self._ocmf(record.begin_ocmf if record.running else record.end_ocmf)
        if method == "GET" and path.startswith("/v1/ocmf/"):
            index_text = path.rsplit("/", 1)[1]
            finished = [r for r in self.records if not r.running]
            if not index_text.isdigit() or int(index_text) >= len(finished):
                return 404, "application/json", b'{"error":"no such index"}'
            return self._ocmf(finished[int(index_text)].end_ocmf)
        return self._json(404, {"error": f"no route {method} {path}"})

    def _ocmf(self, text: str) -> tuple[int, str, bytes]:
        if self.faults.bad_signature:
            head, _, signature = text.rpartition('"SD":"')
            flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
            text = head + '"SD":"' + flipped
        return 200, "text/plain", text.encode()

    @staticmethod
    def _json(status: int, body: Any) -> tuple[int, str, bytes]:
        return status, "application/json", json.dumps(body).encode()

    def _live(self) -> dict[str, Any]:
        shift = BACKWARDS_WH if self.backwards else 0.0
        return {"voltage": round(self.voltage_v, 2), "current": round(self.current_a, 3),
                "power": round(self.power_w, 1), "temperatureH": 31.0, "temperatureL": 29.5,
                "energyImportTotal": round(self.energy_import_wh - shift, 1),
                "energyExportTotal": round(self.energy_export_wh, 1),
                "timestamp": datetime.now(UTC).isoformat()}

    def _status(self) -> dict[str, Any]:
        running = self.running() is not None
        synced = self._time_status(time.time()) == "S"
        bits = {"suLinkStatusIsOk": True, "muFatalErrorOccured": False, "transactionIsOnGoing": running,
                "tamperingIsDetected": False, "timeSyncStatusIsOk": synced, "overTemperatureIsDetected": False,
                "reversedVoltage": False, "suMeasureFailureOccurred": False}
        value = sum(1 << i for i, on in enumerate(bits.values()) if on)
        finished = [r for r in self.records if not r.running]
        raw_key = self.key.public_key().public_numbers()
        return {
            "status": {"value": value, "bits": bits},
            "version": {"applicationFirmwareVersion": FIRMWARE, "legalFirmwareVersion": FIRMWARE,
                        "sensorFirmwareVersion": FIRMWARE},
            "time": datetime.now(UTC).isoformat(), "meterId": self.meter_id,
            "errors": {"value": 0, "bits": {}},
            "publicKey": f"{raw_key.x:064X}{raw_key.y:064X}",
            "publicKeyOcmf": self.public_key_hex,
            "indexOfLastTransaction": max(len(finished) - 1, 0),
            "numberOfStoredTransactions": len(finished),
        }

    def _legal_answer(self, record: LegalRecord) -> dict[str, Any]:
        assert record.end is not None
        begin_kwh, end_kwh = record.begin.energy_wh / 1000.0, record.end.energy_wh / 1000.0
        bits = self._status()["status"]["value"]
        return {
            "paginationCounter": record.end_pagination, "transactionId": record.transaction_id,
            "evseId": record.evse_id, "clientId": record.client_id, "tariffId": record.tariff_id,
            "cableSp": {"cableSpName": "none", "cableSpId": record.cable_id, "cableSpRes": 0},
            "userData": record.user_data,
            "meterValue": {
                "timestampStart": datetime.fromtimestamp(record.begin.wall, UTC).isoformat(),
                "timestampStop": datetime.fromtimestamp(record.end.wall, UTC).isoformat(),
                "transactionDuration": round(record.end.wall - record.begin.wall),
                "intermediateRead": False, "transactionStatus": bits,
                "sampleValue": {"energyUnit": "kWh", "energyImport": round(end_kwh - begin_kwh, 3),
                                "energyImportTotalStart": begin_kwh, "energyImportTotalStop": end_kwh,
                                "energyExport": 0.0, "energyExportTotalStart": 0.0, "energyExportTotalStop": 0.0},
            },
            "meterId": self.meter_id, "signature": "", "publicKey": self.public_key_hex,
        }
