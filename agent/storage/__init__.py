"""Host storage: sizes, safety checks before a guest gets a backing store, copies."""
