"""Kafka events: versioned topic names, their models and encoding."""
