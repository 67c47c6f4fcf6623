"""Policies that act in the native env: heuristics, the oracle, trained models, lookup tables, recorded plans."""
