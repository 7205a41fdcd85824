"""Personal data: account deletion and export, across the social and agent-platform halves.

The one layer allowed to call both `shared.social` and `shared.agents`; it
touches no collection itself: every owner module deletes and exports its own.
"""
