"""Seats and money: seat state and holds in Redis, checkout, settlement in PostgreSQL (the arbiter), the outbox relay and the booking routes."""
