"""Presence: who is online, kept in Redis by the gateways (`registry`), announced on Kafka by the
presence service (`tracker`, `store`, `server`)."""
