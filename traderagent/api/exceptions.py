"""Exchange client exceptions and the ByBit V5 retCode -> exception table.

Every exception carries ret_code, ret_msg and endpoint. Texts never contain the API key or
secret: ByBit echoes the signed "origin_string" (which starts with timestamp + api key) in
10004 messages, so server messages are scrubbed before they are stored (see `redact`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "ExchangeAPIError",
    "AuthenticationError",
    "InvalidTimestampError",
    "AccessDeniedError",
    "RateLimitError",
    "IPBannedError",
    "InsufficientFundsError",
    "InvalidOrderError",
    "DuplicateOrderError",
    "OrderNotFoundError",
    "NetworkError",
    "ExchangeUnavailableError",
    "NotSupportedError",
    "RETCODE_TABLE",
    "exception_for_retcode",
    "redact",
]


class ExchangeAPIError(Exception):
    """Base of every client error."""

    def __init__(
        self,
        message: str,
        *,
        ret_code: int | None = None,
        ret_msg: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.ret_code = ret_code
        self.ret_msg = ret_msg
        self.endpoint = endpoint

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, ret_code={self.ret_code!r}, endpoint={self.endpoint!r})"


class AuthenticationError(ExchangeAPIError):
    """Key invalid / expired / wrong environment, bad signature, missing permission."""


class InvalidTimestampError(AuthenticationError):
    """10002 / -1: request timestamp outside [server - recv_window, server + 1000)."""


class AccessDeniedError(AuthenticationError):
    """HTTP 403 that is not an IP rate-limit ban (geo-blocked IP, access denied)."""


class RateLimitError(ExchangeAPIError):
    """10006 / 170005 / HTTP 429: retried after the reset time (or with backoff)."""

    def __init__(self, message: str, *, reset_at_ms: int | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        # X-Bapi-Limit-Reset-Timestamp, in the server's clock (ms)
        self.reset_at_ms = reset_at_ms
        self.per_item = False  # one item of a batch refused (the batch itself went through)


class IPBannedError(RateLimitError):
    """HTTP 403 "access too frequent": IP ban of ~10 min. Never retried quickly."""

    ban_seconds = 600.0


class InsufficientFundsError(ExchangeAPIError):
    """Not enough available balance / margin."""


class InvalidOrderError(ExchangeAPIError):
    """Order (or request) parameters rejected: qty, price, symbol, reduce-only, mode..."""


class DuplicateOrderError(InvalidOrderError):
    """110072 / 170141: the orderLinkId is already used, i.e. that order exists."""


class OrderNotFoundError(ExchangeAPIError):
    """The order does not exist (or is too late to cancel)."""


class NetworkError(ExchangeAPIError):
    """Timeout, connection error, HTTP 5xx, non-JSON gateway body."""


class ExchangeUnavailableError(NetworkError):
    """Server-side transient error reported in the envelope (10000, 10016, 170007...)."""


class NotSupportedError(ExchangeAPIError):
    """10032: the endpoint is not available on demo trading."""


def _codes(cls: type[ExchangeAPIError], *codes: int) -> dict[int, type[ExchangeAPIError]]:
    return dict.fromkeys(codes, cls)


# docs/exchange.md section 4, one row per class of its table.
RETCODE_TABLE: dict[int, type[ExchangeAPIError]] = {
    # request expired / clock
    **_codes(InvalidTimestampError, 10002, -1),
    # invalid key / wrong environment / expired key, bad signature
    **_codes(AuthenticationError, 10003, 33004, -2015, 10004),
    # permission family
    **_codes(AuthenticationError, 10005, 10010, 10009, 10024, 10027, 10028, 10029, 10007),
    # rate limits (HTTP 429 is handled on the status code; retCode 429 is UTA overload)
    **_codes(RateLimitError, 10006, 170005, 429),
    # generic parameter errors and invalid symbol
    **_codes(InvalidOrderError, 10001, 170130, 170105, 170115, 170116, 170117, 170201, 170121, 170151, 170157),
    # insufficient balance
    **_codes(InsufficientFundsError, 110007, 110004, 110006, 110012, 110044, 110045, 110014, 170131, 170033),
    # qty invalid
    **_codes(
        InvalidOrderError,
        110017, 110094, 110090, 110021,
        170136, 170137, 170148, 170140, 170124, 170381, 170382, 170197, 170198,
    ),
    # price invalid
    **_codes(
        InvalidOrderError,
        110003, 30208, 30209, 110120, 110121,
        170132, 170133, 170134, 170192, 170193, 170194, 170371, 170372, 170218,
    ),
    # order does not exist
    **_codes(OrderNotFoundError, 110001, 170213),
    # already filled / cancelled / not on book (the order exists but cannot be changed)
    **_codes(InvalidOrderError, 110008, 110010, 170139, 170142, 170143, 170190, 170212),
    # "order busy, retry" is transient
    **_codes(ExchangeUnavailableError, 110079, 170191),
    # duplicate orderLinkId
    **_codes(DuplicateOrderError, 110072, 170141),
    # reduce-only (110017 above), symbol reduce-only
    **_codes(InvalidOrderError, 110023, 110042),
    # leverage / position mode (110043 "not modified" is treated as success by set_leverage)
    **_codes(InvalidOrderError, 110043, 110013, 110036, 110038, 110025, 110024, 110028, 110026),
    # too many active orders
    **_codes(InvalidOrderError, 110020),
    # server side: timeouts and server errors are transient; route not found / duplicate request are not
    **_codes(ExchangeUnavailableError, 10000, 10016, 170001, 170007, 170146, 170147, 170149, 170150),
    **_codes(ExchangeAPIError, 10017, 10014),
    # demo only
    **_codes(NotSupportedError, 10032),
}

_MIN_SECRET_LEN = 4
_ORIGIN_RE = re.compile(r"origin_string\[[^\]]*\]?", re.IGNORECASE)


def redact(text: str | None, secrets: Iterable[str] = ()) -> str | None:
    """Remove secrets and ByBit's echoed signing string from a server message."""
    if text is None:
        return None
    text = _ORIGIN_RE.sub("origin_string[***]", text)
    for secret in secrets:
        # a 1-3 char "secret" would shred every message and protects nothing; real ones are 18+ chars
        if secret and len(secret) >= _MIN_SECRET_LEN:
            text = text.replace(secret, "***")
    return text


def exception_for_retcode(
    ret_code: int,
    ret_msg: str | None,
    endpoint: str | None,
    *,
    secrets: Iterable[str] = (),
    reset_at_ms: int | None = None,
) -> ExchangeAPIError:
    """Build the exception for a non-zero retCode (unknown codes -> ExchangeAPIError)."""
    cls = RETCODE_TABLE.get(ret_code, ExchangeAPIError)
    msg = redact(ret_msg, secrets) or ""
    text = f"{endpoint}: retCode {ret_code}: {msg}" if endpoint else f"retCode {ret_code}: {msg}"
    kwargs: dict[str, object] = {"ret_code": ret_code, "ret_msg": msg, "endpoint": endpoint}
    if issubclass(cls, RateLimitError):
        kwargs["reset_at_ms"] = reset_at_ms
    return cls(text, **kwargs)  # type: ignore[arg-type]
