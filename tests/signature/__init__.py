"""Tests of the Signer seam, the VIHF and the submission-set signature."""
