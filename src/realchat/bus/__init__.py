"""The event bus: Kafka, bridged to asyncio."""
