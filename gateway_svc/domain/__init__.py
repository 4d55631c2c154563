"""gateway_svc's pure domain: account rules and the errors of authentication.

Imports only the standard library and payrail_common's plain value types.
"""
