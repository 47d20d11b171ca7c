"""Dashboard pages owned by the catalog."""
