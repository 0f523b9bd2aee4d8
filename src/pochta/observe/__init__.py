"""Observability: logging now; metrics and message trace later."""
