from iotlm.cli import app

app()
