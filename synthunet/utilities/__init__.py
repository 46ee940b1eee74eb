"""The lowest layer: helpers every stage may import; it imports no stage (documentation/architecture.md)."""
