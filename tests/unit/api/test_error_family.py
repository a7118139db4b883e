"""The service's one error family through the API: DataError 400, NotFound 404, Conflict 409,
Unavailable 503, and a database outage on a read is Unavailable, never a 500."""

from __future__ import annotations

import pytest

from connectors.scheduler.read_model_memory import InMemoryInvoiceReadModel
from connectors.scheduler.read_model_sql import SqlInvoiceReadModel
from connectors.sql import engine_for
from devstack.process import free_port
from rules.errors import Conflict, DataError, NotFound, Unavailable
from tests.unit.api.conftest import make_api


def test_a_processscheduler_database_without_its_tables_is_503_naming_only_the_dependency(tmp_path):
    engine = engine_for(f"sqlite:///{tmp_path / 'removed.db'}")  # SQLite makes an empty file: no tables
    api = make_api(read_model=SqlInvoiceReadModel(engine))
    answer = api.client.get("/api/invoices", **api.as_viewer())
    assert answer.status_code == 503 and answer.headers["Retry-After"]
    assert answer.json() == {"detail": "processscheduler cannot be reached, try again"}


def test_a_processscheduler_database_that_does_not_answer_is_503_and_keeps_its_address_to_the_log(caplog):
    engine = engine_for(f"postgresql+psycopg://invoice:pg-secret@127.0.0.1:{free_port()}/scheduler")
    api = make_api(read_model=SqlInvoiceReadModel(engine))
    for path in ("/api/invoices", "/api/invoices/MP-1", "/api/kpi"):
        answer = api.client.get(path, **api.as_viewer())
        assert answer.status_code == 503, path
        assert "127.0.0.1" not in answer.text and "pg-secret" not in answer.text
    assert "127.0.0.1" in caplog.text


@pytest.mark.parametrize(("error", "status"), [
    (DataError("the filter names no rule"), 400),
    (NotFound("no such invoice"), 404),
    (Conflict("not now"), 409),
    (Unavailable("processscheduler", "OperationalError: gone"), 503),
])
def test_each_kind_of_error_has_its_status(error, status):
    class Failing(InMemoryInvoiceReadModel):
        def invoice(self, invoice_id, version=None):
            raise error

    api = make_api()
    api = make_api(read_model=Failing(api.scheduler))
    answer = api.client.get("/api/invoices/MP-1", **api.as_viewer())
    assert answer.status_code == status
    assert answer.json()["detail"] == (str(error) if status != 503 else "processscheduler cannot be reached, try again")
