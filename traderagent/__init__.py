"""TraderAgent: ByBit V5 trading bots operated from Telegram."""

__version__ = "0.1.0"
