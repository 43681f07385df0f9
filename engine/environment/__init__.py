"""Environments (AliECS core/environment): the state machine and the transition pipeline."""
