"""incident-pilot: Alertmanager alerts in, evidence-cited incidents out."""

__version__ = "0.1.0"
