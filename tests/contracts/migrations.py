"""Rolling processscheduler back, for the contracts that check a migration's downgrade."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from connectors.scheduler.migrate import MIGRATIONS


def downgrade(engine, revision: str) -> None:
    """A rollback of the service: its migrations' downgrade, as `alembic downgrade` runs it."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
