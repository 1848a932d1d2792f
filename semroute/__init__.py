"""semroute: an LLM routing service.

It sends each request to the cheapest model that answers it well.
"""

__version__ = "0.1.0"
