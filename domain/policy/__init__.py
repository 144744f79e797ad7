"""The law as code: jurisdiction rule sets (data) and the pure policy engine that applies them."""
