"""Meaning: expression values, elaboration into the graph IR, the ops, inference."""
