"""One-off data migrations, run by hand against a project (see each module)."""
