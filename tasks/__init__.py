"""Celery tasks: thin wrappers that unpack ids and call functions in ``service``."""
