"""Callbacks from providers (delivery status), each verified with the provider's own signature scheme."""
