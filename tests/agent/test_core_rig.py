"""A fake-clock harness around ChargePointCore shared by the test_core_* files."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, TypeVar

from agent.core import (
    AuthResult,
    AuthStatus,
    ChargePointCore,
    ConnectorConfig,
    ConnectorStatus,
    CoreSettings,
    EvReadyChanged,
    IdPresented,
    Input,
    IsolationChanged,
    MeterSample,
    Output,
    PlugChanged,
    StatusChanged,
    Tick,
)

T = TypeVar("T")
START = 1_700_000_000.0  # a wall time in 2023, so schedules and reservations look real


class Rig:
    """A core, a fake wall/monotonic clock, and the outputs seen so far."""

    def __init__(self, connectors: int = 1, config: ConnectorConfig | None = None, *,
                 energy_wh: float | None = 1000.0, **settings: Any) -> None:
        cfg = config or ConnectorConfig(has_lock=True)
        self.core = ChargePointCore(CoreSettings(connectors=(cfg,) * connectors, **settings))
        self.wall = START
        self.mono = 100.0
        self.log: list[Output] = []
        if energy_wh is not None:  # the runtime's first poll: every meter has answered once
            self.send(*(MeterSample(i, energy_wh, 0.0) for i in range(1, connectors + 1)))

    def settings(self, **changes: Any) -> None:
        """Change settings live, as the adapter does after ChangeConfiguration."""
        self.core.settings = replace(self.core.settings, **changes)

    def send(self, *events: Input) -> list[Output]:
        """Feed inputs; return (and log) their outputs."""
        out: list[Output] = []
        for event in events:
            out += self.core.handle(event, self.wall, self.mono)
        self.log += out
        return out

    def call(self, method: str, cmd: Any) -> tuple[Any, list[Output]]:
        """Run a command method; return the answer and outputs."""
        answer, out = getattr(self.core, method)(cmd, self.wall, self.mono)
        self.log += out
        return answer, out

    def advance(self, seconds: float) -> list[Output]:
        """Move both clocks and tick."""
        self.wall += seconds
        self.mono += seconds
        return self.send(Tick())

    def authorize(self, tag: str, connector_id: int | None = 1, parent: str | None = None,
                  status: AuthStatus = AuthStatus.ACCEPTED) -> list[Output]:
        """Present a card and answer its NeedAuthorize."""
        return self.send(IdPresented(connector_id, tag), AuthResult(tag, status, parent))

    def charge(self, connector_id: int = 1, tag: str = "TAG1", energy_wh: float = 1000.0) -> list[Output]:
        """Plug, authorize and make the EV ready (and DC isolation valid)."""
        out = self.send(MeterSample(connector_id, energy_wh, 0.0), PlugChanged(connector_id, True))
        out += self.authorize(tag, connector_id)
        out += self.send(IsolationChanged(connector_id, True), EvReadyChanged(connector_id, True))
        return out

    def status(self, connector_id: int = 1) -> ConnectorStatus:
        """The status last reported for a connector."""
        reported = [o for o in self.log if isinstance(o, StatusChanged) and o.connector_id == connector_id]
        assert reported, f"no status reported for connector {connector_id}"
        return reported[-1].status

    def contactor(self, connector_id: int = 1) -> bool:
        """The contactor as last commanded."""
        return self.core.connectors[connector_id].contactor_closed


def only(outputs: list[Output], kind: type[T]) -> list[T]:
    """The outputs of one type."""
    return [o for o in outputs if isinstance(o, kind)]


def one(outputs: list[Output], kind: type[T]) -> T:
    """The single output of one type."""
    found = only(outputs, kind)
    assert len(found) == 1, f"expected one {kind.__name__}, got {found}"
    return found[0]


# ------------------------------------------------------------------- tests of the API surface itself


def test_public_api_is_exported() -> None:
    import agent.core as core

    for name in core.__all__:
        assert hasattr(core, name), name


def test_tx_ids_come_from_the_allocator() -> None:
    issued = iter([501, 502])
    core = ChargePointCore(CoreSettings(), tx_id_allocator=lambda: next(issued))
    out = core.handle(MeterSample(1, 0.0, 0.0), START)
    out += core.handle(PlugChanged(1, True), START)
    out += core.handle(IdPresented(1, "A"), START)
    out += core.handle(AuthResult("A", AuthStatus.ACCEPTED), START)
    from agent.core import TransactionStarted

    assert [o.local_tx_id for o in only(out, TransactionStarted)] == [501]


def test_tx_ids_count_from_first_tx_id_without_an_allocator() -> None:
    rig = Rig(connectors=2)
    rig.core = ChargePointCore(rig.core.settings, first_tx_id=7)
    rig.send(MeterSample(1, 0.0, 0.0), MeterSample(2, 0.0, 0.0))
    rig.charge(1, "A")
    rig.charge(2, "B")
    from agent.core import TransactionStarted

    assert [o.local_tx_id for o in only(rig.log, TransactionStarted)] == [7, 8]


def test_handle_refuses_a_command_object() -> None:
    import pytest

    from agent.core import RemoteStop

    rig = Rig()
    with pytest.raises(TypeError):
        rig.core.handle(RemoteStop(1), START)  # type: ignore[arg-type]
