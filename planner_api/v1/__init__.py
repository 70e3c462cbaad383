"""Generated gRPC stubs of planner.v1 (tools/genproto.py)."""
