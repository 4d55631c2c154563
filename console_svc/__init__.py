"""console_svc: the web console for customers and operators.

A small aiohttp server that renders HTML pages on the server and talks gRPC to the public
edge (gateway_svc) with the same public contracts as any other client, plus the admin
RPCs of ``payrail.admin.v1``. It keeps no database: the signed-in user's tokens live in
an encrypted, HttpOnly, SameSite=Strict cookie (:mod:`console_svc.session`), every
state-changing request carries a CSRF token bound to that cookie, and every response a
strict Content-Security-Policy (:mod:`console_svc.security`). Its gRPC port serves only
the health protocol, so ``make status`` and the readiness checks treat it like the rest.
"""
