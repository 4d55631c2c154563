"""consumer_svc's insights process (``python -m consumer_svc.insights``).

Two consumer groups read ``payments.events`` independently of the processor: loyalty
(visits per user and merchant, tiers) and benefits (cards a user pays with, tips when
another of their cards would have earned more under the admin-managed catalog). The
process serves what they learned through InsightsService and the catalog through
BenefitCatalogService. Stopping it, or one of its groups, never holds up payments.
"""
