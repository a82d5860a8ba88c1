"""Rules: loading, checking, compiling and evaluating the YAML rule files."""
