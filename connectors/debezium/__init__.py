"""Debezium capture of the marketplace invoice table: connector configuration and record decoder."""

from connectors.debezium.config import (
           MarketplaceCapture,
           put_connector,
           register_connector,
)
from connectors.debezium.decoder import (
           MarketplaceRecordError,
           decode_marketplace_record,
)

__all__ = ["MarketplaceCapture", "MarketplaceRecordError", "decode_marketplace_record", "put_connector",
           "register_connector"]
