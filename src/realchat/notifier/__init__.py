"""Push notifications for offline devices, driven by read positions (docs/notifications.md)."""
