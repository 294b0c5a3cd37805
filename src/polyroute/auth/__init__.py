"""Keys, budgets and rate limits: who may use the gateway, and how much.

The pieces: :mod:`~polyroute.auth.secrets` (making and checking key secrets),
:mod:`~polyroute.auth.keys` (a key's settings as the gateway sees them),
:mod:`~polyroute.auth.budget` (money in exact integers, periods, worst-case estimates),
:mod:`~polyroute.auth.limits` (RPM/TPM/parallel counters), and
:mod:`polyroute.gateway.admission` (what a chat request reserves and settles; a gateway
part built on this package). The store side is
:mod:`polyroute.store.keys`; the HTTP side is :mod:`polyroute.gateway.auth` and
:mod:`polyroute.gateway.admin`.
"""
