"""Observability: logging (``log``) and the message trace (``trace``, ``pochta trace``)."""
