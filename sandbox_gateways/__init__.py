"""Sandbox payment gateways for development and tests, built only on the gateway SDK.

Two are started by ``make up``: ``sandbox-json`` (``python -m sandbox_gateways.json_gateway``)
and ``sandbox-soap`` (``python -m sandbox_gateways.soap_gateway``). They behave by test
card number, like a provider's test mode:

=====================  ==============================================
4242 4242 4242 4242    approved
4000 0000 0000 0002    declined, ``card_declined``
4000 0000 0000 9995    declined, ``insufficient_funds``
4000 0000 0000 0119    never answers (exercises payrail's janitor)
any other card         approved
=====================  ==============================================
"""
