"""the same-total duplicate lookup's index ends with the invoice date

Revision ID: 0015
Revises: 0014

The lookup asks for the vendor's invoices of a total dated within the duplicate window around the
invoice's date (rules.duplicates.lookups_for): with the date in the index, that is one range of
it. On (vendor_key, total_amount) alone, the database read every invoice of the vendor's total
ever decided to find the few within the window.
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

INDEX = "ix_processscheduler_vendor_total"


def upgrade() -> None:
    op.drop_index(INDEX, "processscheduler")
    op.create_index(INDEX, "processscheduler", ["vendor_key", "total_amount", "invoice_date"])


def downgrade() -> None:
    op.drop_index(INDEX, "processscheduler")
    op.create_index(INDEX, "processscheduler", ["vendor_key", "total_amount"])
