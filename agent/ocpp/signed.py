"""A signed data set in the OCA application note's words ("Signed Meter Values in OCPP", v1.0), for both versions.

The note carries every signed data set in 2.0.1's SignedMeterValueType: `signedMeterData` the meter's data
set Base64-encoded (its bytes unchanged, so the signature still holds after decoding), `signingMethod` empty
when the data set names its own algorithm (OCMF does, in SA), `encodingMethod` "OCMF", and `publicKey` the
Base64 of "oca:<encoding>:<content type>:<key>" (here "oca:base16:asn1:" and the hex DER key). 2.0.1 sends
the object as `signedMeterValue`; 1.6 sends it serialized as the `value` of a sampledValue of format SignedData.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from agent.metering import SignedValue

KEY_PREFIX = "oca:base16:asn1:"  # the key as a hex (base16) DER (ASN.1) SubjectPublicKeyInfo
LOGGER = logging.getLogger(__name__)
MAX_DATA_CHARS = 2500  # 2.0.1 SignedMeterValueType.signedMeterData and publicKey maxLength


def public_key_field(hex_der: str) -> str:
    """The note's publicKey: Base64 of "oca:base16:asn1:<hex DER>"."""
    return base64.b64encode((KEY_PREFIX + hex_der).encode("ascii")).decode("ascii")


def signed_meter_value(value: SignedValue, local_tx_id: int = 0) -> dict[str, str] | None:
    """The SignedMeterValueType object; None (logged) when the data set exceeds what the 2.0.1 schema allows."""
    data = base64.b64encode(value.data.encode("utf-8")).decode("ascii")
    key = public_key_field(value.public_key)
    if len(data) > MAX_DATA_CHARS or len(key) > MAX_DATA_CHARS:
        LOGGER.error("transaction %d: a signed data set of %d characters exceeds what OCPP carries; not sent",
                     local_tx_id, len(value.data))
        return None
    # OCMF names its signature algorithm (SA) inside the data set: the note asks for an empty signingMethod then
    method = "" if value.encoding == "OCMF" else value.signing_method
    return {"signedMeterData": data, "signingMethod": method, "encodingMethod": value.encoding, "publicKey": key}


def signed_data_text(value: SignedValue, local_tx_id: int = 0) -> str | None:
    """OCPP 1.6: the sampledValue `value` of format SignedData (the object above as compact JSON)."""
    obj = signed_meter_value(value, local_tx_id)
    return None if obj is None else json.dumps(obj, separators=(",", ":"))


def decode(obj: dict[str, Any]) -> tuple[str, str]:
    """(data set text, hex DER key) from a SignedMeterValueType object (for tests and tools)."""
    data = base64.b64decode(obj["signedMeterData"], validate=True).decode("utf-8")
    key = base64.b64decode(obj["publicKey"], validate=True).decode("ascii")
    return data, key.removeprefix(KEY_PREFIX)
