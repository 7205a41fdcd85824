"""Infrastructure shared by every function: config, clients, HTTP, auth, tasks, logging.

Nothing in this package imports a domain module.
"""
