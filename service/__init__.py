"""Adapters around the domain: HTTP API, storage, authentication, settings and the CLI."""
