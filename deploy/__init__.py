"""Deployment: the function manifest and what is generated from it."""
