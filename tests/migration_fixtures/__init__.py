"""A throwaway app whose migrations tests/test_migration_safety.py lints: 0001 creates a table as
a released migration would have, 0002 does what a rolling upgrade cannot survive, 0003 the same
changes done expand-only. Installed only inside that test (override_settings)."""
