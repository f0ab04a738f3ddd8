"""vswitches: bridges and uplinks (netlink), port VLAN rules (tc BPF), their definitions."""
