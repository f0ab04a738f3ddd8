"""The hpvm* command front ends and avio-agent's entry point."""
