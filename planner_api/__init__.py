"""Generated gRPC stubs (see tools/genproto.py); do not edit."""
