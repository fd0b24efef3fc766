"""shapley."""
