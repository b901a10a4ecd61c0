"""zerosearch: teach LLMs to search by RL against a simulated search engine (ZeroSearch)."""

__version__ = "0.1.0"
