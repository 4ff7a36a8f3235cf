"""Settings, clock, keys and id formats, pure rules, wire types, errors, tokens, logs and metrics: imports nothing else of ours."""
