"""API keys and scopes, the audit trail, and request limits."""
