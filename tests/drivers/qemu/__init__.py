"""Tests of the QEMU driver: real qemu-system-x86_64 guests."""
