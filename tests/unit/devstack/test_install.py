"""What `stack up` fetches: only what the components it starts need, fetched again when pom.xml moves."""

from __future__ import annotations

import pytest

from devstack import install


@pytest.fixture
def fetched(monkeypatch):
    done: list[str] = []
    for name in ("install_postgres", "install_jars", "install_debezium", "install_chromium", "install_odbc"):
        monkeypatch.setattr(install, name, lambda name=name: done.append(name) or True)
    return done


@pytest.mark.parametrize(("components", "steps"), [
    (("kafka",), ["install_jars"]),  # the demo: no PostgreSQL from apt (root), no Debezium
    (("postgres",), ["install_postgres"]),
    (("kafka", "connect"), ["install_jars", "install_debezium"]),
    (("postgres", "kafka", "connect"), ["install_postgres", "install_jars", "install_debezium"]),
])
def test_only_what_the_components_need_is_fetched(fetched, components, steps):
    install.install_all(components=components)
    assert fetched == steps


def test_the_kafka_jars_are_fetched_again_when_pom_xml_changes(monkeypatch, tmp_path):
    pom, runs = tmp_path / "pom.xml", []
    pom.write_text("<project>log4j 2.24</project>")
    monkeypatch.setattr(install, "POM", pom)
    monkeypatch.setenv("INVOICE_AUTOMATION_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(install, "_mvn", lambda: "mvn")
    monkeypatch.setattr(install, "_run", lambda argv, what: (install.kafka_lib().mkdir(parents=True, exist_ok=True),
                                                             runs.append(what)))
    assert install.install_jars() and not install.install_jars() and len(runs) == 1
    pom.write_text("<project>log4j 2.25</project>")
    assert install.install_jars() and len(runs) == 2


def test_a_stale_postgresql_pid_file_does_not_stop_the_next_start(monkeypatch, tmp_path):
    """After a reboot or an OOM kill, pg_ctl stop failed on the dead pid, and every stack up with it."""
    from devstack import postgres

    home = tmp_path / "postgres"
    (home / "data").mkdir(parents=True)
    (home / "data" / "postmaster.pid").write_text("3999999\n")
    ran: list[str] = []

    def run(argv, what, *args):
        ran.append(what)
        raise RuntimeError("stop here")

    monkeypatch.setattr(postgres, "_run", run)
    monkeypatch.setattr(postgres, "_own", lambda path: None)
    with pytest.raises(RuntimeError, match="stop here"):
        postgres.start_postgres(home, 5432)
    assert ran == ["initdb"] and not (home / "data" / "postmaster.pid").exists()
