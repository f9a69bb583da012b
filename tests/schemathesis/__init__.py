"""Configuration of the Schemathesis run (tests/test_schemathesis.py): schemathesis.toml and its hooks."""
