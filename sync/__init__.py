"""Talking to the outside over httpx: webhook outbox and delivery, imports and exports."""
