"""The build farm: use cases behind ports, the HTTP API, and the adapters (embedded and AWS)."""
