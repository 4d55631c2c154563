-- gateway_svc owns the `auth` schema: credentials, users, refresh tokens.
CREATE SCHEMA IF NOT EXISTS auth;
