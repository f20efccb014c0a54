"""The APIs besides chat completions, each an `Endpoint` of the one call pipeline (pipeline.py).

op.py says how a request reaches each deployment (passthrough or translated to chat); one
module per API validates its requests and picks targets.
"""
