"""Homomorphic encryption (CKKS, TenSEAL): key roles, packing, encrypted aggregation and defenses."""
