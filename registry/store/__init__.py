"""The store: the only part of the registry that knows the database schema."""
