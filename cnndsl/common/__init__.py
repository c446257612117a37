"""What every stage shares: diagnostics, input limits, safe text, atomic files, resources."""
