"""Host devices handed to guests whole (pass-through)."""
