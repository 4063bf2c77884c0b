"""Rolling outcome indicators: windows over observations, their statistics and disclosure control. Pure logic."""
