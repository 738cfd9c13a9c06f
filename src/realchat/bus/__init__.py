"""The event bus: Kafka through confluent-kafka (librdkafka), bridged to asyncio: the producer
(`producer`), a consumer thread handing batches to the event loop (`consumer`), and topic
creation (`admin`). What travels on it is `realchat.events`, which imports none of this."""
