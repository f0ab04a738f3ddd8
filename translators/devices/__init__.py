"""Device kinds: one module per kind, listed in `registry.KINDS`.

A kind is a dataclass subclassing `base.Device` that owns, for its
statements: parse/format (`claims`, `parse`, `format`), rules (`check`,
`check_slot_mates`, `check_guest`), allocation (`complete`), libvirt XML
(`render`, `render_all`, `metadata_facts`, `reads`, `read`/`read_all`),
identity for plans (`IDENTITY`, `PLACE`, `matches`, `modified`) and
`hpvmstatus` rows (`SECTION`, `status_row`, `status_lines`). The generic
modules (grammar, validate, allocate, render, readback, plan, status) loop
over the registry. A new kind is its module plus one line in `registry.KINDS`
(ahead of a kind sharing its first word); `tests/test_device_registry.py`
shows one.
"""
