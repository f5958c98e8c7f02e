"""Channels: one module per channel, all implementing bridge.channels.base.Channel."""
