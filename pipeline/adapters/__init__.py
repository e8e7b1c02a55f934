"""The I/O edges: providers, storage, webhooks, input fetches, the broker and Redis pub/sub."""
