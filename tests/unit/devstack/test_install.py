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
