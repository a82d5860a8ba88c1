"""incident-pilot's benchmark harness: `python -m bench` (see bench/run.py)."""
