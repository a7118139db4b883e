"""The HTTP API for the RPA bot and AP, and the live KPI dashboard: `create_app(settings)`."""
