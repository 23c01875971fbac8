"""The search space: decisions, sampling and encode/decode, all derived from one YAML."""

from search_space.space import Block, Decision, SearchSpace, op_choice, op_name

__all__ = ["Block", "Decision", "SearchSpace", "op_choice", "op_name"]
