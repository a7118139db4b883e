"""Debezium captures of the marketplace invoice table and of Sampro's PO tables: connector
configurations and record decoders."""

from connectors.debezium.config import (
           MarketplaceCapture,
           put_connector,
           register_connector,
)
from connectors.debezium.decoder import (
           MarketplaceRecordError,
           decode_marketplace_record,
)
from connectors.debezium.sampro_config import (
           SamproCapture,
           SqlServerSamproCapture,
           sampro_capture,
)
from connectors.debezium.sampro_decoder import (
           SamproRecordError,
           decode_sampro_record,
)

__all__ = ["MarketplaceCapture", "MarketplaceRecordError", "SamproCapture", "SamproRecordError",
           "SqlServerSamproCapture", "decode_marketplace_record", "decode_sampro_record", "put_connector",
           "register_connector", "sampro_capture"]
