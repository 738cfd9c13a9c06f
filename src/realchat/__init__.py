"""RealChat: real-time messaging with strict per-conversation order and nothing lost."""

__version__ = "0.1.0"
