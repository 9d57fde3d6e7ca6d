"""tbhook: receive, keep and read Tracebuzz webhooks."""

__version__ = "0.1.0"
