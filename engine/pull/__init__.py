"""Pull enrichment: prometheus / loki rules, queried after the incident is stored
(engine.pull.runner), within a time budget per alert; their findings are appended to the
incident before its first delivery goes out (held at most the budget)."""
