"""avio-agent: forwards host storage events to running guests and applies guest config files."""
