"""Storage adapters: the event-sourced application, record keys and the tenant log."""
