"""What a position needs to get safe, and how likely it is to be liquidated: pure functions of what is known."""
