"""API types, validation, quantities, label selectors and the table of kinds."""
