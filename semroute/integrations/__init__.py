"""Adapters that let AI gateways ask semroute for a model (each imports its gateway lazily)."""
