"""The gateway: the OpenAI-compatible HTTP server that everything else plugs into."""

from polyroute.gateway.app import create_app

__all__ = ["create_app"]
