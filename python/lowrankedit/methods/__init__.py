"""Direction-finding methods, one module per paper (lowrankgan, resefa, lelsd, panda)."""
