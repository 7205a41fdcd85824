"""The provider catalog and the LLM gateway, used by both halves."""
