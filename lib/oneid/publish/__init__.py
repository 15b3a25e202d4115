"""Publish stage: audience exports in the exact formats each destination expects."""
