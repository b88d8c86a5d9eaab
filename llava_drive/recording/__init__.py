"""Recording sessions: pairing frames with labels, the recording stack and its command."""
