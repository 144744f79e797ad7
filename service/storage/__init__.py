"""Storage adapters: the event-sourced application on SQLite or PostgreSQL, keys and the tenant log."""
