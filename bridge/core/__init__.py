"""The functional core: pure functions over frozen dataclasses. No I/O, no asyncio.

Nothing in here imports from bridge.store, bridge.intake, bridge.channels or bridge.app.
"""
