"""The command line's client of a running server's API (`incident-pilot incidents ...`)."""
