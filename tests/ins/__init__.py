"""Tests of the INS identity model and the INSi client."""
