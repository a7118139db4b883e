-- docker-compose (and the testcontainers fixtures) only: what the local stack's devstack/postgres.py
-- and SamproStandIn create. Runs once, on an empty data volume, as the POSTGRES_USER.
-- tests/unit/test_docker_compose.py checks these tables against their SQLAlchemy definitions.
CREATE DATABASE sampro OWNER invoice;
CREATE DATABASE scheduler OWNER invoice;

\connect marketplace

CREATE TABLE marketplace_invoices (
    invoice_id VARCHAR(64) NOT NULL,
    version INTEGER DEFAULT '1' NOT NULL,
    vendor_id VARCHAR(64),
    invoice_number VARCHAR(64),
    po_number VARCHAR(64) NOT NULL,
    invoice_date DATE,
    currency VARCHAR(3),
    lines JSON NOT NULL,
    tax_amount NUMERIC(18, 4) DEFAULT '0' NOT NULL,
    extra_charges JSON DEFAULT '[]' NOT NULL,
    total_amount NUMERIC(18, 4),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (invoice_id)
);
CREATE INDEX ix_marketplace_invoices_po_number ON marketplace_invoices (po_number);
-- Deletes carry the whole old row, so a withdrawal still names its PO (Debezium's before image).
ALTER TABLE marketplace_invoices REPLICA IDENTITY FULL;

-- processscheduler is migrated by the worker (alembic); Sampro is a stand-in with no migrations.
\connect sampro

CREATE TABLE po_header (
    po_number VARCHAR(64) NOT NULL,
    vendor_id VARCHAR(64) NOT NULL,
    status VARCHAR(32) NOT NULL,
    currency VARCHAR(3) NOT NULL,
    order_date DATE NOT NULL,
    tax_rate NUMERIC(9, 6),
    allowed_charges VARCHAR(400) NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (po_number)
);
CREATE INDEX ix_po_header_updated_at ON po_header (updated_at);

CREATE TABLE po_line (
    po_number VARCHAR(64) NOT NULL,
    line_no INTEGER NOT NULL,
    part_number VARCHAR(64) NOT NULL,
    unit_price NUMERIC(18, 4) NOT NULL,
    quantity_ordered NUMERIC(18, 4) NOT NULL,
    quantity_received NUMERIC(18, 4),
    quantity_invoiced NUMERIC(18, 4) NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (po_number, line_no)
);
CREATE INDEX ix_po_line_updated_at ON po_line (updated_at);

CREATE TABLE ap_invoice (
    sampro_invoice_id VARCHAR(64) NOT NULL,
    vendor_id VARCHAR(64) NOT NULL,
    invoice_number VARCHAR(64) NOT NULL,
    po_number VARCHAR(64) NOT NULL,
    invoice_date DATE,
    total_amount NUMERIC(18, 4),
    entered_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (sampro_invoice_id)
);
CREATE INDEX ix_ap_invoice_vendor_number ON ap_invoice (upper(ltrim(rtrim(vendor_id))), upper(ltrim(rtrim(invoice_number))));
CREATE INDEX ix_ap_invoice_vendor_total ON ap_invoice (upper(ltrim(rtrim(vendor_id))), total_amount, invoice_date);
