"""The social-introductions half: phone sign-in, profiles, matches, photos, faces."""
