"""remediator: automatic incident remediation driven by Alertmanager webhooks."""

__version__ = "0.1.0"
