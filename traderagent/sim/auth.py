"""ByBit V5 HMAC request authentication, implemented from the wire rules (never from our client)."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import unquote

from traderagent.sim.matching import ApiError

DEFAULT_RECV_WINDOW = 5000
# A larger recv_window is cut to this, so an old (replayed) request is refused whatever window it claims.
# ByBit's docs state no figure; 60 s is the cap the other big exchanges document (unconfirmed for ByBit).
MAX_RECV_WINDOW = 60_000
FUTURE_TOLERANCE_MS = 1000  # ByBit accepts at most 1 s of client clock running ahead


def sign(secret: str, timestamp: str, api_key: str, recv_window: str, payload: bytes | str) -> str:
    """hex HMAC-SHA256 of timestamp + key + recvWindow + payload (raw query string or raw body)."""
    body = payload.encode() if isinstance(payload, str) else payload
    msg = f"{timestamp}{api_key}{recv_window}".encode() + body
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def check_timestamp(timestamp: str, recv_window: str, now_ms: int) -> None:
    """Valid iff now - min(recvWindow, MAX_RECV_WINDOW) <= timestamp < now + 1000; else 10002 with ByBit's
    text (which echoes the window as sent)."""
    try:
        ts, recv = int(timestamp), int(recv_window)
    except ValueError:
        raise ApiError(10002, f"invalid request, please check your server timestamp or recv_window param. "
                              f"req_timestamp[{timestamp}],server_timestamp[{now_ms}],"
                              f"recv_window[{recv_window}]") from None
    if not (now_ms - min(recv, MAX_RECV_WINDOW) <= ts < now_ms + FUTURE_TOLERANCE_MS):
        raise ApiError(10002, f"invalid request, please check your server timestamp or recv_window param. "
                              f"req_timestamp[{ts}],server_timestamp[{now_ms}],recv_window[{recv}]")


def check_signature(secret: str, timestamp: str, api_key: str, recv_window: str, payload: bytes,
                    given: str, *, lenient_query: bool = False) -> None:
    """Compare against the exact bytes received; for a GET query also the percent-decoded form, because
    ccxt signs its unquoted rawencode while its HTTP layer may re-quote it on the wire."""
    candidates = [payload]
    if lenient_query:
        decoded = unquote(payload.decode("latin-1")).encode()
        if decoded != payload:
            candidates.append(decoded)
    for cand in candidates:
        if hmac.compare_digest(sign(secret, timestamp, api_key, recv_window, cand), given.lower()):
            return
    shown = payload.decode("utf-8", "replace")[:500]
    raise ApiError(10004, f"Error sign, please check your signature generation algorithm: origin_string[***{shown}]")
