"""Everything that touches the host: libvirt, udev, netlink, the daemon and the commands."""
