"""ByBit V5 request signing: HMAC-SHA256 over timestamp + key + recv_window + the exact payload sent."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from decimal import Decimal
from urllib.parse import quote

__all__ = ["sign", "build_query", "format_value"]

# Characters ByBit's own values never need encoded; anything else is percent-encoded once.
_SAFE = "-_.~"


def format_value(value: object) -> str:
    """Wire text of a parameter: Decimal without exponent, bool as JSON literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def build_query(params: Mapping[str, object]) -> str:
    """The query string exactly as sent (insertion order, no leading '?').

    `cursor` is passed through verbatim: ByBit hands it out already percent-encoded and
    re-encoding it breaks both the lookup and the signature.
    """
    parts = []
    for key, value in params.items():
        if value is None:
            continue
        text = format_value(value)
        parts.append(f"{key}={text if key == 'cursor' else quote(text, safe=_SAFE)}")
    return "&".join(parts)


def sign(secret: bytes, timestamp: int, api_key: str, recv_window: int, payload: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of `timestamp + api_key + recv_window + payload`."""
    prefix = f"{timestamp}{api_key}{recv_window}".encode()
    return hmac.new(secret, prefix + payload, hashlib.sha256).hexdigest()


def sign_ws_auth(secret: bytes, expires_ms: int) -> str:
    """The WebSocket auth signature: hex HMAC-SHA256 of ``"GET/realtime" + expires``."""
    return hmac.new(secret, f"GET/realtime{expires_ms}".encode(), hashlib.sha256).hexdigest()
