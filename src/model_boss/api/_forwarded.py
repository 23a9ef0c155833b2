"""What of a request body reaches a backend: an allow-list of fields with ranges, per kind.

Every field below that sizes the answer (``max_tokens``, ``n_predict``, ``n_probs``,
``top_logprobs``, ``n``...) is bounded: a bad value is a 400 that names the field, before
the request is queued. ``max_tokens`` and its kin are bounded by the model's context.

Unknown fields: the managed engines (``llama_server``, ``vllm_serve``) get only the fields
listed for them, the rest are dropped (OpenAI clients send fields such as ``user`` or
``metadata`` that no engine needs; an engine-specific field that is not listed could size
the answer unchecked). ``openai_remote`` and ``simulated`` get unknown fields as sent: the
remote API judges them, and its answer is bounded by the answer size cap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from model_boss.api.errors import APIError

__all__ = ["NO_CONTEXT_BOUND", "check_forwarded"]

NO_CONTEXT_BOUND = 1_000_000  # the bound of ``max_tokens`` when the context is not known

# A check returns what is wrong with a value (None: nothing); ``context`` is the model's.
Check = Callable[[Any, int], str | None]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(lo: int, hi: int | None = None, *, context: bool = False) -> Check:
    def check(value: Any, ctx: int) -> str | None:
        top = ctx if context else hi
        if not _is_int(value):
            return "expected an integer"
        if value < lo or (top is not None and value > top):
            upper = f"{top}" + (" (the model's context)" if context else "")
            return f"must be from {lo} to {upper}" if top is not None else f"must be >= {lo}"
        return None

    return check


def _number(lo: float, hi: float) -> Check:
    def check(value: Any, ctx: int) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "expected a number"
        if not math.isfinite(value) or not lo <= value <= hi:
            return f"must be from {lo:g} to {hi:g}"
        return None

    return check


def _bool(value: Any, ctx: int) -> str | None:
    return None if isinstance(value, bool) else "expected true or false"


def _any(value: Any, ctx: int) -> str | None:
    return None


def _items(max_items: int) -> Check:
    """A list or table of at most ``max_items`` entries."""

    def check(value: Any, ctx: int) -> str | None:
        if isinstance(value, list | dict) and len(value) > max_items:
            return f"at most {max_items} entries"
        return None

    return check


def _logprobs(value: Any, ctx: int) -> str | None:
    # chat: true/false; completions: how many alternatives per token
    if isinstance(value, bool):
        return None
    return _int(0, 20)(value, ctx)


def _stop(value: Any, ctx: int) -> str | None:
    if value is None or isinstance(value, str):
        return None
    if not isinstance(value, list) or len(value) > 16:
        return "expected a string or a list of at most 16 strings"
    return None


_TOKENS = _int(1, context=True)
_LAST_N = _int(-1, context=True)

# The OpenAI fields every kind is checked on (and the managed engines accept).
OPENAI: Mapping[str, Check] = {
    "model": _any,
    "messages": _any,
    "prompt": _any,
    "input": _any,
    "stream": _bool,
    "stream_options": _any,
    "max_tokens": _TOKENS,
    "max_completion_tokens": _TOKENS,
    "temperature": _number(0, 2),
    "top_p": _number(0, 1),
    "n": _int(1, 1),
    "best_of": _int(1, 1),
    "stop": _stop,
    "seed": _any,
    "presence_penalty": _number(-2, 2),
    "frequency_penalty": _number(-2, 2),
    "logit_bias": _items(1024),
    "logprobs": _logprobs,
    "top_logprobs": _int(0, 20),
    "echo": _bool,
    "suffix": _any,
    "response_format": _any,
    "tools": _items(128),
    "tool_choice": _any,
    "parallel_tool_calls": _bool,
    "encoding_format": _any,
    "dimensions": _int(1, 65_536),
    "reasoning_effort": _any,
}

# llama-server's own request fields (tools/server/README.md of llama.cpp).
LLAMA_SERVER: Mapping[str, Check] = {
    **OPENAI,
    "n_predict": _int(-1, context=True),
    "n_probs": _int(0, 20),
    "post_sampling_probs": _bool,
    "return_tokens": _bool,
    "timings_per_token": _bool,
    "top_k": _int(0, 1000),
    "min_p": _number(0, 1),
    "typical_p": _number(0, 1),
    "top_n_sigma": _number(-1, 100),
    "xtc_probability": _number(0, 1),
    "xtc_threshold": _number(0, 1),
    "repeat_penalty": _number(0, 10),
    "repeat_last_n": _LAST_N,
    "dry_multiplier": _number(0, 100),
    "dry_base": _number(0, 100),
    "dry_allowed_length": _int(0, context=True),
    "dry_penalty_last_n": _LAST_N,
    "dry_sequence_breakers": _items(64),
    "dynatemp_range": _number(0, 2),
    "dynatemp_exponent": _number(0, 100),
    "mirostat": _int(0, 2),
    "mirostat_tau": _number(0, 100),
    "mirostat_eta": _number(0, 1),
    "min_keep": _int(0, 1000),
    "n_keep": _LAST_N,
    "ignore_eos": _bool,
    "cache_prompt": _bool,
    "samplers": _items(16),
    "grammar": _any,
    "json_schema": _any,
    "t_max_predict_ms": _int(0, 86_400_000),
    "id_slot": _int(-1, 1024),
    "chat_template_kwargs": _any,
    "reasoning_format": _any,
    "embd_normalize": _int(-1, 2),
}

# vLLM's extra sampling fields (vllm/entrypoints/openai/protocol.py).
VLLM_SERVE: Mapping[str, Check] = {
    **OPENAI,
    "top_k": _int(-1, 1000),
    "min_p": _number(0, 1),
    "min_tokens": _int(0, context=True),
    "repetition_penalty": _number(0, 10),
    "length_penalty": _number(-100, 100),
    "ignore_eos": _bool,
    "skip_special_tokens": _bool,
    "spaces_between_special_tokens": _bool,
    "include_stop_str_in_output": _bool,
    "stop_token_ids": _items(64),
    "prompt_logprobs": _int(0, 20),
    "guided_json": _any,
    "guided_regex": _any,
    "guided_choice": _items(256),
    "guided_grammar": _any,
    "chat_template_kwargs": _any,
    "add_generation_prompt": _bool,
    "continue_final_message": _bool,
    "truncate_prompt_tokens": _int(1, context=True),
}

# kind -> (checks, whether unknown fields are dropped)
_RULES: Mapping[str, tuple[Mapping[str, Check], bool]] = {
    "llama_server": (LLAMA_SERVER, True),
    "vllm_serve": (VLLM_SERVE, True),
}


def check_forwarded(kind: str, body: Mapping[str, Any], context: int) -> dict[str, Any]:
    """The body to send to a backend of ``kind``: each known field checked (APIError 400
    naming the first bad one), unknown fields dropped where the kind's list is closed."""
    checks, closed = _RULES.get(kind, (OPENAI, False))
    out: dict[str, Any] = {}
    for key, value in body.items():
        check = checks.get(key)
        if check is None:
            if not closed:
                out[key] = value
            continue
        if value is not None:
            problem = check(value, context)
            if problem is not None:
                raise APIError(
                    400, f"{key}: {problem}, got {value!r:.60}", code="invalid_value", param=key
                )
        out[key] = value
    return out
