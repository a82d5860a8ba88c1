"""The correlation-quality benchmark: `python -m bench quality`.

A seeded fleet and fault scenario (fleet.py, scenario.py) played through the HTTP API of a
live server (play.py), scored from what the server stored (score.py), reported as a table,
docs/QUALITY.md and quality.json (report.py, cli.py).
"""
