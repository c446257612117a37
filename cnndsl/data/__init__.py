"""Data shipped inside the package: the offline MNIST sample (see README.md here)."""
