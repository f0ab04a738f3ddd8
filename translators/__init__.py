"""Pure translation of HPVM resource statements and options to libvirt XML and back.

Nothing in this package touches the host: it turns text into a guest model,
validates and completes the model, renders it as libvirt domain XML and reads
domain XML back into the model.
"""
