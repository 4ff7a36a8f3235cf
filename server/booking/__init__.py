"""Seats and money: seat state and holds, orders, settlement (PostgreSQL decides), relay, routes.

May import: core, store, waiting, payments.
"""
