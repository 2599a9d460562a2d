"""Neural prediction from behaviour: alignment, PCs, linear and deep encoders (later issues)."""
