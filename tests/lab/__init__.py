"""Simulated ethoscope lab: fake devices in network namespaces, each with its own sshd and data tree.

    from tests.lab import Lab
    with Lab(name="t1", n_devices=3) as lab:
        lab.populate(lab.devices[0])
"""
from .lab import LAB_ROOT, Lab, LabDevice, LiveWriter, NodeControl

__all__ = ["Lab", "LabDevice", "LiveWriter", "NodeControl", "LAB_ROOT"]
