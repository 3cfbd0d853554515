"""One model per kind of record that crosses a Kafka topic (see ``streams.topics``)."""
