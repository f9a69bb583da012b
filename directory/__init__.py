"""The domain: organisations, services, cases, handoffs, statistics. No HTTP, no settings."""
