"""Offline routing: datasets, importers, training, evaluation and plots.

Nothing on the gateway's serving path imports this package (a test pins it): the gateway
needs trained routers (:mod:`polyroute.routing`), never the pipeline that makes them.
"""
