"""gensynth: generative models for medical image computing in JAX/Flax."""
