"""Commands of the train package (registered by ai_trading_bridge.py)."""

COMMANDS: list = []
