"""Routing: choose, per request, the model of an ensemble that answers well for least cost."""
