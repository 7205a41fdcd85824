"""The Python package every function group imports: domain modules over `shared.platform`."""
