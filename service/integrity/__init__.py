"""The tenant Merkle log: signed checkpoints, proofs, and the regulator export."""
