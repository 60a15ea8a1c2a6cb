"""The HTTP side: the app factory, the webhook, probes and the operator API."""
