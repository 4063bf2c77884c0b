"""Outcome ascertainment: patient timelines, the rules that turn them into observations, and their
tracker. Pure logic."""
