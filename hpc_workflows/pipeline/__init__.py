"""The Dagster layer: thin ops and graphs over the plain modules. Nothing scientific here."""
