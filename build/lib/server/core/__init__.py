"""Settings, clock, ids and keys, pure rules, wire types, errors, tokens, logs, metrics.

May import: nothing.
"""
