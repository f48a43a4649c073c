"""Tests of the command line (fastpose/cli.py, fastpose/commands) and of the training runs it starts."""
