import base64
import uuid

from devstack import jvm


def test_a_cluster_id_that_would_read_as_a_flag_is_drawn_again(monkeypatch):
    flag_like = uuid.UUID(bytes=b"\xfb" + bytes(15))  # base64 '-w...'
    plain = uuid.UUID(bytes=b"\x00" + bytes(15))
    assert base64.urlsafe_b64encode(flag_like.bytes).startswith(b"-")
    draws = iter([flag_like, plain])
    monkeypatch.setattr(jvm.uuid, "uuid4", lambda: next(draws))

    assert jvm.new_cluster_id() == "AAAAAAAAAAAAAAAAAAAAAA"


def test_a_cluster_id_is_22_url_safe_characters():
    cluster_id = jvm.new_cluster_id()
    assert len(cluster_id) == 22 and not cluster_id.startswith("-")
    assert base64.urlsafe_b64decode(cluster_id + "==")
