"""The shipped quant stages (foundation, alpha, risk, dataops pillars)."""
