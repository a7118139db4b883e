"""One contract for the audit's topic readers: in memory, and a real Kafka topic."""

from __future__ import annotations

import threading

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from connectors.api_ports import TopicNotFound
from connectors.topic_reader import InMemoryTopicReader, KafkaTopicReader
from rules.errors import Unavailable

T0 = 1_795_000_000_000
RECORDS = [(n % 3, T0 + n * 1000, f"PO-{n % 3}".encode(), f"value-{n}".encode()) for n in range(30)]
# A dead letter's provenance: read by `explain`, a header without a value as b"".
HEADERS = (("source.topic", b"rpa.completions"), ("flow", None), ("error", b"DataError: why"))


class TopicReaderContract:
    @pytest.fixture
    def reader_and_topic(self):
        raise NotImplementedError

    def test_the_whole_topic_is_read_partition_by_partition_in_order(self, reader_and_topic):
        reader, topic = reader_and_topic
        ranges = reader.ranges(topic)
        assert ranges == {0: (0, 10), 1: (0, 10), 2: (0, 10)}
        records = list(reader.read(topic, ranges))
        assert sorted(r.value for r in records) == sorted(value for *_, value in RECORDS)
        for partition in range(3):
            mine = [r for r in records if r.partition == partition]
            assert [r.offset for r in mine] == list(range(10))
            assert [r.timestamp_ms for r in mine] == [T0 + n * 1000 for n in range(partition, 30, 3)]
        assert {r.value: r.headers for r in records if r.headers} == {
            b"value-7": (("source.topic", b"rpa.completions"), ("flow", b""), ("error", b"DataError: why"))}

    def test_a_time_range_maps_to_offsets_per_partition(self, reader_and_topic):
        reader, topic = reader_and_topic
        ranges = reader.ranges(topic, T0 + 10_000, T0 + 20_000)  # records n = 10 .. 19
        records = list(reader.read(topic, ranges))
        assert sorted(r.value for r in records) == sorted(f"value-{n}".encode() for n in range(10, 20))

    def test_a_range_after_the_last_record_is_empty(self, reader_and_topic):
        reader, topic = reader_and_topic
        ranges = reader.ranges(topic, T0 + 60_000)
        assert all(start == end for start, end in ranges.values()) and list(reader.read(topic, ranges)) == []

    @pytest.fixture
    def delete_records(self):
        """(reader, topic, partition, before): the records before `before` deleted, as retention does."""
        raise NotImplementedError

    def test_an_unknown_topic_is_named(self, reader_and_topic):
        reader, _ = reader_and_topic
        with pytest.raises(TopicNotFound, match="no-such-topic"):
            reader.ranges("no-such-topic")
        with pytest.raises(TopicNotFound, match="no-such-topic"):
            reader.log_starts("no-such-topic")

    def test_a_partition_whose_first_records_were_deleted_starts_after_them(self, reader_and_topic, delete_records):
        reader, topic = reader_and_topic
        assert reader.log_starts(topic) == {0: 0, 1: 0, 2: 0}
        delete_records(reader, topic, 1, 4)
        assert reader.log_starts(topic) == {0: 0, 1: 4, 2: 0}
        ranges = reader.ranges(topic)
        assert ranges == {0: (0, 10), 1: (4, 10), 2: (0, 10)}
        assert [r.offset for r in reader.read(topic, ranges) if r.partition == 1] == list(range(4, 10))
        assert reader.ranges(topic, T0)[1] == (4, 10)  # a time before the first record kept: where it starts


def _read_as(headers: tuple) -> tuple[tuple[str, bytes], ...]:
    return tuple((name, text or b"") for name, text in headers)


class TestInMemoryTopicReader(TopicReaderContract):
    @pytest.fixture
    def reader_and_topic(self):
        reader = InMemoryTopicReader()
        for partition, at, key, value in RECORDS:
            reader.append("t", partition, at, key, value, _read_as(HEADERS) if value == b"value-7" else ())
        return reader, "t"

    @pytest.fixture
    def delete_records(self):
        return lambda reader, topic, partition, before: reader.delete_records(topic, partition, before)


class TestKafkaTopicReader(TopicReaderContract):
    @pytest.fixture
    def reader_and_topic(self, kafka_bootstrap, unique_name):
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        admin.create_topics([NewTopic(unique_name, 3, 1)])[unique_name].result()
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        for partition, at, key, value in RECORDS:
            producer.produce(unique_name, key=key, value=value, partition=partition, timestamp=at,
                             headers=list(HEADERS) if value == b"value-7" else None)
        assert producer.flush(30) == 0
        yield KafkaTopicReader(kafka_bootstrap), unique_name
        admin.delete_topics([unique_name])

    @pytest.fixture
    def delete_records(self, kafka_bootstrap):
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})

        def delete(reader, topic, partition, before):
            for future in admin.delete_records([TopicPartition(topic, partition, before)]).values():
                future.result()
        return delete

    def test_a_read_that_hears_nothing_from_kafka_ends_naming_it(self):
        """Brokers away say so in errors of no partition, which the read passed over: an audit's
        progress bar stood still for good."""
        reader = KafkaTopicReader("127.0.0.1:1", timeout=2)
        raised: list[BaseException] = []

        def read():
            try:
                list(reader.read("t", {0: (0, 10)}))
            except Exception as error:
                raised.append(error)

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        thread.join(30)
        assert not thread.is_alive()
        (error,) = raised
        assert isinstance(error, Unavailable) and "reading t: nothing for 2 s at 127.0.0.1:1" in str(error)
