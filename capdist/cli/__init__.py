"""Command-line interface (click); commands hold no logic of their own."""
