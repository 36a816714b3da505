"""Encryption of exchange credentials at rest (Fernet: AES-128-CBC + HMAC-SHA256).

The master key comes from TRADERAGENT_MASTER_KEY (Settings.master_key) and is never stored,
logged or put in an exception. `traderagent keygen` prints a fresh key.
"""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from traderagent.database.exceptions import MasterKeyError

ENV_NAME = "TRADERAGENT_MASTER_KEY"


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def _key_text(master_key: Any) -> str:
    # Accept config.Secret as well as a plain string, without importing config here.
    getter = getattr(master_key, "get", None)
    value = getter() if callable(getter) else master_key
    return (value or "").strip() if isinstance(value, str) or value is None else str(value)


class CredentialCipher:
    """Encrypts/decrypts credential fields; construction validates the key's format."""

    __slots__ = ("_fernet",)

    def __init__(self, master_key: Any) -> None:
        text = _key_text(master_key)
        if not text:
            raise MasterKeyError(
                f"{ENV_NAME} is not set: credentials are stored encrypted and need it "
                "(create one with `traderagent keygen`)"
            )
        try:
            self._fernet = Fernet(text.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise MasterKeyError(
                f"{ENV_NAME} is not a valid key (expected 44 URL-safe base64 characters, "
                "as printed by `traderagent keygen`)"
            ) from None

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str, *, what: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError, UnicodeError):
            raise MasterKeyError(
                f"cannot decrypt {what}: {ENV_NAME} is not the key it was saved with "
                "(or the stored value is damaged)"
            ) from None

    def __repr__(self) -> str:
        return "CredentialCipher(<key hidden>)"
