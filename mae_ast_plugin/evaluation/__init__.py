"""Evaluating encoders: the frozen-encoder linear probe (``probe``)."""
