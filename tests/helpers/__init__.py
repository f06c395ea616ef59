"""Test helpers (not test modules): doubles and builders shared by the test files."""
