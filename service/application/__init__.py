"""The application layer: the use cases, between the HTTP routes and the storage."""
