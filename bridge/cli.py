"""Commands of the bridge package (registered by ai_trading_bridge.py)."""

COMMANDS: list = []
