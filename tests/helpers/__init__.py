"""Shared test helpers: constants, fakes behind real HTTP endpoints."""
