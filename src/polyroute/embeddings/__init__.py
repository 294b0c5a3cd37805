"""Prompt embeddings for the learned routers: the protocol, the backends, the choices by name.

- :mod:`~polyroute.embeddings.base`: the :class:`~polyroute.embeddings.base.Embedder` protocol.
- :mod:`~polyroute.embeddings.static`: ``minilm-static``, the default (a table lookup).
- :mod:`~polyroute.embeddings.minilm`: ``minilm``, the full all-MiniLM-L6-v2 encoder in numpy.
- :mod:`~polyroute.embeddings.registry`: the choices by name, and the default.
"""
