"""Read models built from the event log (see the projections issue)."""
