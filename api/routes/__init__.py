"""Routers by audience: the RPA bot's callbacks, AP's reads and overrides, the dashboard, operations."""
