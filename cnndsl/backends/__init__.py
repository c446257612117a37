"""Readers of one analysis: the report (table, JSON), Keras code, the Keras model, diagrams."""
