"""The gRPC adapter: translates requests to domain calls and stores families, runs and laws."""
