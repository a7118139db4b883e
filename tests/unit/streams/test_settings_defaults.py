"""Where the settings put things by default: every SQLite database in DATA_DIR, as DATA_DIR is set.
They were under the working folder whatever DATA_DIR said, which in the image (/app, not the app
user's) stopped the API at start on its sessions database."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from cli.failures import explain
from streams.settings import PREFIX, Settings

DATABASES = {name: field for name, field in Settings.model_fields.items() if name.endswith("_db_url")}


@pytest.fixture(autouse=True)
def no_settings_from_outside(monkeypatch):
    for variable in os.environ:
        if variable.upper().startswith(PREFIX):
            monkeypatch.delenv(variable)


def test_the_databases_are_the_four_the_service_keeps():
    assert set(DATABASES) == {"marketplace_db_url", "sampro_db_url", "scheduler_db_url", "api_sessions_db_url"}


@pytest.mark.parametrize("name", sorted(DATABASES))
def test_every_default_database_is_sqlite_in_data_dir(monkeypatch, name):
    monkeypatch.setenv(f"{PREFIX}DATA_DIR", "/data")
    url = getattr(Settings(_env_file=None), name)
    assert url.startswith("sqlite:////data/") and url.endswith(".db"), url


@pytest.mark.parametrize("name", sorted(DATABASES))
def test_without_data_dir_the_databases_are_in_its_default_folder(name):
    assert getattr(Settings(_env_file=None), name).startswith("sqlite:///.invoice-automation/")


def test_data_dir_given_in_code_places_the_databases_too(tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path)
    assert settings.api_sessions_db_url == f"sqlite:///{tmp_path}/api-sessions.db"
    assert settings.scheduler_db_url == f"sqlite:///{tmp_path}/scheduler.db"


def test_a_database_url_that_is_set_is_kept(monkeypatch):
    monkeypatch.setenv(f"{PREFIX}DATA_DIR", "/data")
    monkeypatch.setenv(f"{PREFIX}API_SESSIONS_DB_URL", "sqlite:////shared/api-sessions.db")
    settings = Settings(_env_file=None)
    assert settings.api_sessions_db_url == "sqlite:////shared/api-sessions.db"
    assert settings.marketplace_db_url == "sqlite:////data/marketplace.db"


def test_a_setting_that_fails_is_one_line_not_one_more_for_each_database_it_kept_from_its_default(monkeypatch):
    monkeypatch.setenv(f"{PREFIX}DATA_DIR", "/data")
    monkeypatch.setenv(f"{PREFIX}BATCH_SIZE", "0")  # read before the databases: their defaults are not made
    with pytest.raises(ValidationError) as failed:
        Settings(_env_file=None)
    assert explain(failed.value) == [f"setting {PREFIX}BATCH_SIZE='0': Input should be greater than or equal to 1"]
