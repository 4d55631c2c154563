"""Risk: the rules that gate dispatch, and where their memory lives."""
