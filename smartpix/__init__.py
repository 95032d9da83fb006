"""Shared plumbing of the Smart Pixels pipeline: the user-facing error type, atomic artifact
writes and the one command-line entry point that dispatches to the stages."""
