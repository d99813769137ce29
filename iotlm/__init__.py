"""IoT-LM: shared settings and the `iotlm` command line."""
