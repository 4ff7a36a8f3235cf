"""Settings, clock, ids and keys, pure rules, wire types, errors, tokens, QR codes, logs, metrics.

May import: nothing.
"""
