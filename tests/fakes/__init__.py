"""Small servers and functions speaking real wire formats, for tests."""
