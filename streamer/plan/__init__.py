"""The score: what the stream plays next, from the performer's settings."""
