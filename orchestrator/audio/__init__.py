"""Audio conversion: a leaf package (numpy, soxr, audioop only) that both ``media`` and ``agents`` use."""
