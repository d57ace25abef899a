"""Chapter 7 experiments (spec ch. 7, Sect. 10.3), one module per experiment; run them through
``experiments/ch07_inverse.py``."""
