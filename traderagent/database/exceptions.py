"""Database errors: each one says what went wrong in words an operator can act on.

None of them ever carries a secret: no API key or secret, no master key, no database password.
"""

from __future__ import annotations


class DatabaseError(Exception):
    """Base class of every error the database layer raises on purpose."""


class DuplicateBotError(DatabaseError):
    """A bot with that name already exists."""

    def __init__(self, name: str) -> None:
        super().__init__(f"a bot named {name!r} already exists")
        self.name = name


class BotNotFoundError(DatabaseError):
    """No bot with that name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no bot named {name!r}")
        self.name = name


class OrderNotFoundError(DatabaseError):
    """No order with that client order id (ByBit orderLinkId)."""

    def __init__(self, client_order_id: str) -> None:
        super().__init__(f"no order with client order id {client_order_id!r}")
        self.client_order_id = client_order_id


class DuplicateOrderError(DatabaseError):
    """create_order with a client order id that is already recorded."""

    def __init__(self, client_order_id: str) -> None:
        super().__init__(f"an order with client order id {client_order_id!r} already exists")
        self.client_order_id = client_order_id


class TradeNotFoundError(DatabaseError):
    """No trade with that id."""

    def __init__(self, trade_id: int) -> None:
        super().__init__(f"no trade with id {trade_id}")
        self.trade_id = trade_id


class TradeAlreadyClosedError(DatabaseError):
    """close_trade on a trade that is already closed."""

    def __init__(self, trade_id: int) -> None:
        super().__init__(f"trade {trade_id} is already closed")
        self.trade_id = trade_id


class LeaseLapsed(DatabaseError):
    """This desk cannot be sure it still owns the bot (orchestrator/lease.py, Fencing): nothing of
    the write (or send) is made."""


class DatabaseUnavailableError(DatabaseError):
    """The database server cannot be reached or refused us (message names host:port, never a password)."""


class NotADatabaseError(DatabaseError):
    """The SQLite path exists but is not a database file."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path} is not an SQLite database (wrong file, or corrupted); check DATABASE_URL")
        self.path = path


class MasterKeyError(DatabaseError):
    """TRADERAGENT_MASTER_KEY is missing, malformed, or not the key the credentials were saved with."""
