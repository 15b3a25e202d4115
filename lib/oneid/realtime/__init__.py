"""The realtime stage: Kafka events → identity in the stream → realtime tags and triggers →
a signed webhook (``docs/realtime.md``)."""
